"""``evol export --select``: the best K of a large scored run, each row unlike the rows taken before it.

    python -m bench.select                          # 25,000 of 250,000 rows, three timed exports
    python -m bench.select --rows 50000 --k 5000    # a quicker run

The run folder is synthetic but shaped like a real one: bench.dedup's corpus (the shipped seeds, templated
distinct instructions and 30 % near-duplicate variants of them) as the instructions of 4 rounds of 4 operations,
short answers, and a scores.jsonl with complexity and quality 1-10 (hashed from the text, so many ties; 1 % of
rows have an unclear quality). Each timed export is the whole command's work: reading the run and its scores,
ranking, the diversity walk, the diversity figures, writing train.jsonl, export.json and the card.

The audit (not timed) compares a sample of the chosen rows with every other chosen row by exhaustive
rapidfuzz: pairs at or above --max-similarity the index let through.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from rapidfuzz import fuzz, process

from bench.corpus import corpus
from evol.output.export import ExportOptions, export
from evol.output.selection import Choice
from evol.quality.score_reader import Unclear
from evol.quality.scoring import Score
from evol.rundir.files import read_jsonl, write_json, write_jsonl
from evol.rundir.folder import SCORES
from evol.text import normalize

OPERATIONS = ("add_constraints", "deepen", "concretize", "breadth")


def make_run(path: Path, n: int, seed: int = 0) -> Path:
    """A run folder of ``n`` kept rows with scores, as 'evol run' and 'evol score' leave one."""
    texts = corpus(n, seed)
    rng = random.Random(seed)
    records, scores = [], []
    for i, text in enumerate(texts):
        rnd, op = 1 + i % 4, OPERATIONS[rng.randrange(4)]
        rid = f"seed-{i:06d}.r{rnd}"
        records.append(
            {
                "id": rid,
                "seed_id": f"seed-{i:06d}",
                "seed_index": i,
                "round": rnd,
                "operation": op,
                "instruction": text,
                "output": f"Here is a careful answer. {text[:120]}",
            }
        )
        digest = hashlib.sha256(text.encode()).digest()
        quality: int | None = 1 + digest[1] % 10
        unclear: dict[str, Unclear] = {}
        if digest[2] < 3:  # ~1 %: the judge's answer was cut off
            quality, unclear = None, {"quality": Unclear(outcome="truncated", answer="<think>The response")}
        scores.append(
            Score(
                id=rid, round=rnd, complexity=1 + digest[0] % 10, quality=quality, unclear=unclear, model="bench-judge"
            )
        )
    path.mkdir(parents=True, exist_ok=True)
    write_json(
        path / "manifest.json",
        {"run_id": path.name, "status": "complete", "profile": {"name": "general"}, "counts": {"seeds": n, "kept": n}},
    )
    write_jsonl(path / "records.jsonl", records)
    write_jsonl(path / SCORES, scores)
    return path


def audit(out: Path, threshold: float, sample: int) -> tuple[int, int]:
    """(sampled chosen rows, of them with another chosen row at or above ``threshold``) by exhaustive rapidfuzz."""
    texts = [normalize(r["instruction"]) for r in read_jsonl(out / "train.jsonl")]
    picks = sorted(random.Random(1).sample(range(len(texts)), min(sample, len(texts))))
    sims = process.cdist(
        [texts[i] for i in picks], texts, scorer=fuzz.ratio, score_cutoff=threshold * 100, dtype=np.uint8, workers=-1
    )
    sims[np.arange(len(picks)), picks] = 0
    return len(picks), int((sims.max(axis=1) > 0).sum())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.select", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=250_000)
    parser.add_argument("--k", type=int, default=25_000)
    parser.add_argument("--repeat", type=int, default=3, help="timed exports (the median is the figure)")
    parser.add_argument("--max-similarity", type=float, default=0.9)
    parser.add_argument("--sample", type=int, default=1000, help="chosen rows audited by exhaustive rapidfuzz")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-select-") as tmp:
        start = time.perf_counter()
        run = make_run(Path(tmp) / "run", args.rows)
        print(f"synthetic run of {args.rows} rows with scores written in {time.perf_counter() - start:.1f} s")
        walls, cpus, summary = [], [], {}
        for n in range(args.repeat):
            start, cpu = time.perf_counter(), time.process_time()
            summary = export(
                [run],
                Path(tmp) / "out",
                ExportOptions(fmt="jsonl", choice=Choice(k=args.k, max_similarity=args.max_similarity)),
            )
            walls.append(time.perf_counter() - start)
            cpus.append(time.process_time() - cpu)
            # the load average says how much the machine's other work slowed this run down
            print(
                f"export --select {args.k}: {walls[-1]:.1f} s wall, {cpus[-1]:.1f} s CPU (run {n + 1}, "
                f"load average {os.getloadavg()[0]:.1f})",
                flush=True,
            )
        chosen = summary["chosen"]
        div = chosen["diversity"]
        print(
            f"median {statistics.median(walls):.1f} s wall, {statistics.median(cpus):.1f} s CPU for {chosen['taken']} of {chosen['eligible']} eligible rows; "
            f"{chosen['skipped_as_similar']} skipped as too similar; mean nearest-neighbour similarity "
            f"{div['selected']['mean_nearest_similarity']:.3f} chosen vs "
            f"{div['best_by_score_alone']['mean_nearest_similarity']:.3f} by score alone"
        )
        for c in ("complexity", "quality"):
            print(
                f"mean {c}: {chosen['scores']['eligible'][c]['mean']:.2f} eligible, "
                f"{chosen['scores']['selected'][c]['mean']:.2f} chosen"
            )
        sampled, close = audit(Path(tmp) / "out", args.max_similarity, args.sample)
        print(
            f"audit: {close} of {sampled} sampled chosen rows have another chosen row at ratio >= {args.max_similarity}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
