"""What the two scorers of ``evol score`` give: spread, distinct values and ties, side by side.

    python -m bench.score                     # 60 seeds, 4 rounds, a scripted run and a scripted judge
    python -m bench.score --limit 100 --base-url http://localhost:8000/v1 --model Qwen/Qwen2.5-7B-Instruct

One run over the Self-Instruct seeds against a scripted model (real HTTP, in this process) whose every evolution
adds one constraint clause, so a row's planted difficulty is its seed's own (1-4, from a hash) plus its round.
Then ``evol score --method direct`` and ``--method evol`` score it. With no ``--base-url`` the judge is scripted
too: alone, a row gets 6 + (planted value - 1) // 3 plus a hash's 0 or 1 (scores bunch at 6-8 and a row's own
noise decides between neighbours, as point-wise judges are often seen to do); side by side, the judge ranks the
versions of one lineage by their planted value and gives the lowest the lowest of their direct scores and each
higher level one point more. Answers get a planted quality of 1-4 from a hash. So the scripted figures show the
mechanics of each method on a judge like that, not a real model's accuracy; ``--base-url`` measures your judge.
Printed per method: distinct complexity values and complexity x quality products, the share of rows in the
largest group tied on the product, pairs of rows of one lineage given the same complexity, the standard
deviation, and the rank correlation of complexity with the planted difficulty.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import statistics
import tempfile
from collections import Counter
from pathlib import Path

from evol.cli.main import main as cli
from evol.config import RunConfig
from evol.engines.local import execute
from evol.quality.scoring import load_scores
from evol.testing.replies import GIVEN, given_prompt
from evol.testing.server import Reply, ScriptedServer, last_user

SEEDS = Path(__file__).resolve().parent.parent / "datasets" / "seeds" / "self_instruct_seed_tasks.jsonl"
CLAUSE = "Also, "


def _h(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


def seed_of(instruction: str) -> str:
    return instruction.split(f" {CLAUSE}", 1)[0]


def difficulty(instruction: str) -> int:
    """The planted difficulty: the seed's own (1-4) and one per constraint clause a round added."""
    return 1 + _h(seed_of(instruction)) % 4 + instruction.count(CLAUSE)


def evolver(request: dict) -> Reply:
    prompt = last_user(request)
    if GIVEN in prompt:
        parent = given_prompt(prompt)
        n = parent.count(CLAUSE)
        return Reply(content=f"{parent} {CLAUSE}keep it under {50 + 10 * n} words and cite source {_h(parent) % 97}.")
    if "First instruction:" in prompt:
        return Reply(content="Not Equal")
    return Reply(content=f"A careful answer of {len(prompt.split())} words about the task, step by step.")


def _truth(text: str, quality: bool) -> int:
    """The planted value: an instruction's difficulty, or an answer's quality (1-4, from a hash of it)."""
    return 1 + _h("quality:" + text) % 4 if quality else difficulty(text)


def _direct(text: str, quality: bool) -> int:
    """A point-wise judge: 6 to 8, the planted value read coarsely, a hash's noise deciding between neighbours."""
    return min(10, 6 + (_truth(text, quality) - 1) // 3 + _h("noise:" + text) % 2)


def judge(request: dict) -> Reply:
    prompt = last_user(request)
    if "Reply with one line per" in prompt:  # side by side: rank the versions, score the first as alone, and
        # give each harder (better) one a point more than the one below it, as far as the scale reaches
        shown = prompt.split("\n\nReply with one line per", 1)[0]
        pairs = re.findall(r"\[(\d+)\] Instruction:\n(.*?)\n\n\[\1\] Response:\n(.*?)(?=\n\n\[\d+\] |\Z)", shown, re.S)
        quality = bool(pairs)
        listed = re.split(r"\n\n\[\d+\] ", "\n\n" + shown[shown.index("\n[1] ") + 1 :])[1:]  # multi-line ones too
        texts = [a for _, _, a in pairs] if quality else listed
        truth = [_truth(t, quality) for t in texts]
        levels = sorted(set(truth))
        low = min(_direct(t, quality) for t in texts)
        scores = [min(10, low + levels.index(v)) for v in truth]
        return Reply(content="\n".join(f"[{n}] Score: {s}" for n, s in enumerate(scores, 1)))
    text = prompt.split("Instruction:\n", 1)[1].split("\n\nResponse:\n", 1)
    quality = len(text) == 2
    shown = text[1] if quality else text[0]
    return Reply(content=f"Score: {_direct(shown.rsplit(chr(10) * 2 + 'Reply with', 1)[0], quality)}")


def figures(run: Path, method: str) -> dict:
    scores = load_scores(run)
    rows = [json.loads(x) for x in (run / "records.jsonl").read_text().splitlines()]
    got = [(r, c, scores[r["id"]]) for r in rows if r["id"] in scores and (c := scores[r["id"]].complexity) is not None]
    complexity = [c for _, c, _ in got]
    products = [c * s.quality for _, c, s in got if s.quality is not None]
    counts = Counter(products)
    lineage: dict[str, list[float]] = {}
    for r, c, _ in got:
        lineage.setdefault(r["seed_id"], []).append(c)
    pairs = same = 0
    for values in lineage.values():
        for i, a in enumerate(values):
            for b in values[i + 1 :]:
                pairs += 1
                same += a == b
    truth = [float(difficulty(r["instruction"])) for r, _, _ in got]
    return {
        "method": method,
        "rows": len(got),
        "distinct complexity": len(set(complexity)),
        "distinct products": len(counts),
        "largest tie on the product": f"{max(counts.values()) / max(1, len(products)):.0%}",
        "lineage pairs tied on complexity": f"{same}/{pairs}",
        "stdev complexity": round(statistics.pstdev(complexity), 2),
        "rank correlation with difficulty": round(_spearman(complexity, truth), 3),
    }


def _spearman(a: list[float], b: list[float]) -> float:
    def ranks(xs: list[float]) -> list[float]:
        order = sorted(range(len(xs)), key=lambda i: xs[i])
        out = [0.0] * len(xs)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
                j += 1
            for k in range(i, j + 1):
                out[order[k]] = (i + j) / 2
            i = j + 1
        return out

    return statistics.correlation(ranks(a), ranks(b))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--limit", type=int, default=60)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--base-url", help="a real judge's endpoint (key from EVOL_API_KEY); default: the scripted judge")
    p.add_argument("--model", help="the judging model at --base-url")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        with ScriptedServer(evolver, record=False) as srv:
            config = RunConfig(
                seeds=str(SEEDS),
                limit=args.limit,
                rounds=args.rounds,
                base_url=srv.base_url,
                out=str(run),
                concurrency=16,
            )
            asyncio.run(execute(config))
        table = []
        for method in ("direct", "evol"):
            (run / "scores.jsonl").unlink(missing_ok=True)
            extra = ["--model", args.model] if args.model else []
            if args.base_url:
                code = cli(["-q", "score", str(run), "--method", method, "--base-url", args.base_url, *extra])
            else:
                with ScriptedServer(judge, record=False) as srv:
                    code = cli(["-q", "score", str(run), "--method", method, "--base-url", srv.base_url])
            assert code == 0
            table.append(figures(run, method))
    keys = list(table[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in table:
        print("| " + " | ".join(str(row[k]) for k in keys) + " |")


if __name__ == "__main__":
    main()
