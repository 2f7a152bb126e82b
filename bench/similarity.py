"""``evol export --select``'s cosine default, measured: Deita's filter on a decoder's hidden states against a sentence model.

    python -m bench.similarity                                  # both models, the default's figures
    python -m bench.similarity --embeddings-url URL --embeddings-model NAME   # calibrate for your own model

Deita (arXiv 2312.15685) takes a row only if its cosine to every row already taken is below 0.9, with embeddings
the mean-pooled last hidden states of a decoder LLM (LLaMA-13B). Such states are anisotropic (every cosine runs
high), so 0.9 there rejects far more than 0.9 on a sentence-embedding model, where 0.9 is near-paraphrase. This
benchmark serves two real models behind an OpenAI-compatible ``/v1/embeddings`` on loopback:

* ``decoder``: the embedded SmolLM2-135M (the ``local`` extra) in llama.cpp's embedding mode, mean pooling: the
  kind of embedding Deita used, at small scale;
* ``wordllama``: WordLlama's l2_supercat_256, a sentence-embedding model whose weights ship in its wheel
  (bench only: ``pip install wordllama==0.4.0.post1``).

The rows are the 175 shipped seeds, one in-depth child of each (the seed with one added requirement, as
add_constraints writes it) and 24 paraphrases of seeds written for this benchmark, with scores hashed from the
text, as a scored run leaves them. Each model gets: the cosine of the paraphrase pairs, of the parent/child pairs
and of each seed's nearest other seed; the share of rows ``evol export --select`` (the CLI, in its own process)
rejects at Deita's 0.9 on the decoder; and the sentence model's threshold that rejects the same share.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import numpy as np

from evol.llm.embeddings import Embedder
from evol.llm.endpoint import free_port
from evol.output.export import ExportOptions, export
from evol.output.selection import Choice
from evol.quality.scoring import Score
from evol.rundir.files import read_jsonl, write_json, write_jsonl
from evol.rundir.folder import SCORES

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "datasets" / "seeds" / "self_instruct_seed_tasks.jsonl"

# one added requirement per child, in the way add_constraints evolves a seed
REQUIREMENTS = (
    "Keep the whole answer under 120 words.",
    "Give your reasoning in a numbered list before the final answer.",
    "Include at least one concrete example drawn from everyday life.",
    "Write it so that a ten-year-old could follow every step.",
    "Avoid any technical jargon, and define each term you must use.",
    "End with a one-sentence summary of the main point.",
    "Mention one common mistake people make here and how to avoid it.",
    "Present the result as a table with two columns.",
)

# seed index -> the same task in other words (written for this benchmark)
PARAPHRASES = {
    0: "What could I have for breakfast without eggs that still has protein and about 700 to 1000 calories?",
    1: "How are the two items in each of the given pairs related?",
    2: "Write a single sentence that describes each of the people listed below.",
    3: "Describe a case where the stereotype given could hurt you.",
    4: "Come up with a fitting, subjective subject line for the email below:",
    5: "In a job interview, how would you respond to this question?",
    6: "Come up with a list of possible resolutions for the New Year.",
    7: "Tell me what the following idiom means and give a few examples of its use.",
    8: "Write a haiku built around the word below:",
    9: "Suggest a film I could watch this weekend and say why.",
    10: "Propose some games a group of people can play together.",
    11: "Write a shopping list for a healthy meal.",
    12: "Explain why humans behave the way they do.",
    14: "Write a question and its answer based on the facts given.",
    15: "Write the fourth word so that the pairs share the same analogy.",
    16: "From the symptom described, name the likely disease and recommend some medicine.",
    17: "Make a checklist for planning a birthday party.",
    18: "Answer the email and politely turn down the invitation.",
    20: "Write an inventive opening scene for a horror film.",
    21: "Make up an entertaining math problem for kids.",
    22: "Find every subset of a set of numbers whose elements add up to a given target.",
    23: "Share a recipe for cooking the food below.",
    6 + 100: "List some New Year's resolutions people might make.",  # a second paraphrase of seed 6 (key - 100)
    11 + 100: "Put together a list of groceries for a nutritious meal.",
}


def rows() -> tuple[list[dict], dict[str, list[tuple[int, int]]]]:
    """The candidate rows (seeds, children, paraphrases) and the index pairs of each kind."""
    seeds = [json.loads(line)["instruction"] for line in SEEDS.read_text().splitlines() if line.strip()]
    out = [{"kind": "seed", "seed": i, "text": t} for i, t in enumerate(seeds)]
    out += [
        {"kind": "child", "seed": i, "text": f"{t} {REQUIREMENTS[i % len(REQUIREMENTS)]}"} for i, t in enumerate(seeds)
    ]
    out += [{"kind": "paraphrase", "seed": k % 100, "text": t} for k, t in PARAPHRASES.items()]
    n = len(seeds)
    pairs = {
        "paraphrase": [(r["seed"], i) for i, r in enumerate(out) if r["kind"] == "paraphrase"],
        "parent/child": [(i, n + i) for i in range(n)],
    }
    return out, pairs


def make_run(path: Path, items: list[dict]) -> Path:
    """A scored run folder of the rows (scores hashed from the text, so the rank order is arbitrary)."""
    records, scores = [], []
    for i, item in enumerate(items):
        rnd = {"seed": 0, "child": 1, "paraphrase": 1}[item["kind"]]
        rid = f"row-{i:04d}"
        records.append(
            {
                "id": rid,
                "seed_id": f"seed-{item['seed']:04d}",
                "seed_index": item["seed"],
                "round": rnd,
                "operation": "seed" if rnd == 0 else "add_constraints",
                "instruction": item["text"],
                "output": "An answer.",
            }
        )
        digest = hashlib.sha256(item["text"].encode()).digest()
        scores.append(Score(id=rid, round=rnd, complexity=1 + digest[0] % 10, quality=1 + digest[1] % 10))
    path.mkdir(parents=True, exist_ok=True)
    write_json(
        path / "manifest.json",
        {
            "run_id": path.name,
            "status": "complete",
            "profile": {"name": "general"},
            "counts": {"seeds": 175, "kept": len(items)},
        },
    )
    write_jsonl(path / "records.jsonl", records)
    write_jsonl(path / SCORES, scores)
    return path


class _Vectors(BaseHTTPRequestHandler):
    """``/v1/embeddings`` from a table of each text's vector, worked out once by the real model (the decoder
    takes ~0.4 s a text on a busy 2-core machine, and each export asks for every row again)."""

    table: ClassVar[dict[str, list[float]]] = {}

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        data = [{"object": "embedding", "index": i, "embedding": self.table[t]} for i, t in enumerate(body["input"])]
        answer = json.dumps({"object": "list", "data": data, "model": body.get("model", "")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args) -> None:
        pass


def serve_vectors(texts: list[str], vectors: np.ndarray) -> tuple[ThreadingHTTPServer, str]:
    handler = type("Handler", (_Vectors,), {"table": {t: v.tolist() for t, v in zip(texts, vectors, strict=True)}})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/v1"


def wordllama_vectors(texts: list[str]) -> np.ndarray:
    import wordllama
    from wordllama import WordLlama

    # its tokenizer file ships in the wheel too, under the folder load() reads as a cache: no download
    model = WordLlama.load(cache_dir=Path(wordllama.__file__).parent, disable_download=True)
    return np.asarray(model.embed(texts), dtype=np.float32)


_DECODER = """
import sys, threading, xllamacpp
p = xllamacpp.CommonParams()
p.model.path, p.hostnames, p.port, p.n_ctx = sys.argv[1], ["127.0.0.1"], int(sys.argv[2]), 2048
p.embedding = True
p.pooling_type = xllamacpp.llama_pooling_type.LLAMA_POOLING_TYPE_MEAN
p.n_parallel, p.verbosity = 1, 1
p.cpuparams.n_threads = p.cpuparams_batch.n_threads = 2
server = xllamacpp.Server(p)
sys.stdin.read()  # until the bench closes the pipe
"""


def serve_decoder() -> tuple[subprocess.Popen, str]:
    from evol.llm.local.setup import default_model_path

    port = free_port()
    child = subprocess.Popen(
        [sys.executable, "-c", _DECODER, str(default_model_path()), str(port)],
        stdin=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/v1"
    for _ in range(600):
        try:
            Embedder(url, "decoder")(["ready?"])
            return child, url
        except Exception:  # not up yet
            time.sleep(0.2)
    child.kill()
    raise SystemExit("the decoder's embedding server did not start")


def pair_figures(vectors: np.ndarray, items: list[dict], pairs: dict) -> dict[str, list[float]]:
    out = {kind: [float(vectors[a] @ vectors[b]) for a, b in p] for kind, p in pairs.items()}
    seeds = np.array([i for i, r in enumerate(items) if r["kind"] == "seed"])
    sims = vectors[seeds] @ vectors[seeds].T
    np.fill_diagonal(sims, -1)
    out["nearest other seed"] = sims.max(axis=1).tolist()
    return out


def rejected_share(run: Path, out: Path, url: str, model: str, threshold: float) -> float:
    """The share of rows ``export --select <all>`` skips as too similar (in this process)."""
    k = len(read_jsonl(run / "records.jsonl"))
    choice = Choice(k=k, max_similarity=threshold, embeddings_url=url, embeddings_model=model)
    summary = export([run], out, ExportOptions(fmt="jsonl", choice=choice))
    return summary["chosen"]["skipped_as_similar"] / summary["chosen"]["eligible"]


def cli_share(run: Path, out: Path, url: str, model: str, threshold: float | None) -> tuple[float, dict]:
    """The same through the real CLI in its own process; with ``threshold`` None, --max-similarity's default."""
    cmd = [sys.executable, "-m", "evol", "export", str(run), "--out", str(out), "--format", "jsonl"]
    cmd += ["--select", str(len(read_jsonl(run / "records.jsonl"))), "--embeddings-url", url]
    cmd += ["--embeddings-model", model] + ([] if threshold is None else ["--max-similarity", str(threshold)])
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "EVOL_API_KEY": ""})
    saved = json.loads((out / "export.json").read_text())
    return saved["chosen"]["skipped_as_similar"] / saved["chosen"]["eligible"], saved["choice"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.similarity", description=__doc__.splitlines()[0])
    parser.add_argument("--embeddings-url", help="calibrate your own model: its OpenAI-compatible endpoint")
    parser.add_argument("--embeddings-model", default="text-embedding-3-small")
    parser.add_argument("--deita", type=float, default=0.9, help="Deita's threshold on the decoder (default 0.9)")
    args = parser.parse_args(argv)
    items, pairs = rows()
    print(f"{len(items)} rows: 175 seeds, 175 children, {len(PARAPHRASES)} paraphrases")
    texts = [r["text"] for r in items]
    stop = []
    decoder, decoder_url = serve_decoder()
    try:
        start = time.perf_counter()
        vectors = Embedder(decoder_url, "decoder", batch=8, timeout=600)(texts)
        print(f"decoder embeddings of {len(texts)} rows in {time.perf_counter() - start:.0f} s")
    finally:
        decoder.stdin.close()  # type: ignore[union-attr]
        decoder.wait(30)
    server, url = serve_vectors(texts, vectors)
    stop.append(server.shutdown)
    models = {"decoder (SmolLM2-135M, mean-pooled hidden states)": (url, "decoder")}
    if args.embeddings_url:
        models[f"yours ({args.embeddings_model})"] = (args.embeddings_url, args.embeddings_model)
    else:
        server, url = serve_vectors(texts, wordllama_vectors(texts))
        stop.append(server.shutdown)
        models["wordllama (l2_supercat_256, sentence embeddings)"] = (url, "wordllama")
    try:
        with tempfile.TemporaryDirectory(prefix="bench-similarity-") as tmp:
            run = make_run(Path(tmp) / "run", items)
            print("\nmedian cosine (min-max) of each kind of pair")
            print("| model | paraphrase | parent/child | nearest other seed |\n|---|---|---|---|")
            for name, (url, model) in models.items():
                figs = pair_figures(Embedder(url, model)(texts), items, pairs)
                cells = [f"{np.median(v):.3f} ({min(v):.3f}-{max(v):.3f})" for v in figs.values()]
                print(f"| {name} | {' | '.join(cells)} |")
            (dname, (durl, dmodel)), (sname, (surl, smodel)) = models.items()
            target, choice = cli_share(run, Path(tmp) / "deita", durl, dmodel, args.deita)
            print(f"\nDeita's filter at {args.deita:g} on the {dname}: rejects {target:.1%} (evol export, the CLI)")
            print(f"\n{sname}: rejected share by --max-similarity\n| threshold | rejected |\n|---|---|")
            sweep = {}
            for t in np.arange(0.60, 0.951, 0.01):
                sweep[round(float(t), 2)] = rejected_share(run, Path(tmp) / f"s{t:.2f}", surl, smodel, float(t))
                print(f"| {t:.2f} | {sweep[round(float(t), 2)]:.1%} |")
            best = min(sweep, key=lambda t: (abs(sweep[t] - target), -t))
            print(f"\nthe threshold rejecting the share closest to Deita's: {best:.2f} ({sweep[best]:.1%})")
            share, choice = cli_share(run, Path(tmp) / "default", surl, smodel, None)
            print(
                f"evol export --select with --embeddings-url and no --max-similarity: {choice['max_similarity']:g} "
                f"({choice['max_similarity_from']}), rejects {share:.1%}"
            )
    finally:
        for s in stop:
            s()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
