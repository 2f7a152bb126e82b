"""What several candidate answers and answer evolution cost, and what they give: a scripted-server run.

    python -m bench.answers                      # 40 seeds, 2 rounds: N=1, N=4, N=4 with 2 evolution rounds
    python -m bench.answers --limit 100 --rounds 3

The scripted model of evol/testing/answer_script.py (real HTTP, in this process) answers with planted quality: one
model sampled four times for the same prompt gives qualities 5, 8, 3, 6 in turn; the ranking judge reads the
quality and writes it in realistic forms (one in five is cut off mid-thought the first time and retried), and
an improvement request moves quality by its direction (deeper +2, helpful/detailed +1, relevant 0, creative -2).
Every call is priced as gpt-4o-mini (list price) with the server's token counts (words), so the dollar figures
show the ratios between settings, not a real model's bill. Printed: per setting, rows kept, candidates and
ranked candidates per instruction, calls by stage, cost in total, per stage and per kept row, mean best score,
and the preference pairs a ``--format dpo`` export keeps at --min-margin 1 and 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
from pathlib import Path

from evol.config import RunConfig
from evol.engines.local import execute
from evol.errors import ConfigError
from evol.output.export import ExportOptions, export
from evol.testing.answer_script import AnswerScript
from evol.testing.server import ScriptedServer

SEEDS = Path(__file__).resolve().parent.parent / "datasets" / "seeds" / "self_instruct_seed_tasks.jsonl"
SETTINGS = (("N=1", 1, 0), ("N=4", 4, 0), ("N=4, K=2", 4, 2))


def measure(name: str, answers: int, evolve: int, limit: int, rounds: int, root: Path) -> dict:
    out = root / name.replace(" ", "").replace(",", "_").replace("=", "")
    with ScriptedServer(AnswerScript(), record=False) as srv:
        config = RunConfig(
            seeds=str(SEEDS),
            limit=limit,
            rounds=rounds,
            base_url=srv.base_url,
            model="gpt-4o-mini",
            answers=answers,
            evolve_answers=evolve,
            out=str(out),
            concurrency=16,
            include_seeds=False,  # the cost per kept evolved row, as measured before seeds were in the dataset
        )
        manifest = asyncio.run(execute(config))
    records = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    kept = manifest.counts.kept
    firsts = [len([c for c in r.get("candidates", []) if not c["key"].startswith("e")]) or 1 for r in records]
    ranked = [len([c for c in r.get("candidates", []) if c.get("ranking")]) for r in records]
    best = [c["score"] for r in records for c in r.get("candidates", []) if c.get("best") and c.get("score")]
    pairs = {}
    for margin in (1.0, 2.0):
        try:
            pairs[margin] = export(
                [out], root / f"{out.name}-dpo{margin:g}", ExportOptions(fmt="dpo", min_margin=margin)
            )["rows"]["train"]
        except ConfigError:  # one candidate per instruction: no pairs
            pairs[margin] = 0
    cost = manifest.cost_usd
    return {
        "setting": name,
        "kept": kept,
        "candidates": statistics.mean(firsts),
        "ranked": statistics.mean(ranked),
        "calls": manifest.usage.calls,
        "cost": cost.total,
        "by_stage": cost.by_stage,
        "per_row": cost.total / kept if kept else None,
        "best": statistics.mean(best) if best else None,
        "pairs": pairs,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--limit", type=int, default=40)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(name, n, k, args.limit, args.rounds, Path(tmp)) for name, n, k in SETTINGS]
    print(f"{args.limit} seeds, {args.rounds} rounds, every call priced as gpt-4o-mini\n")
    print(
        "| setting | kept rows | candidates / row | ranked / row | pairs (margin ≥1) | pairs (≥2) | mean best score "
        "| cost USD | cost / kept row | vs N=1 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    base = rows[0]["per_row"]
    for r in rows:
        best = f"{r['best']:.2f}" if r["best"] is not None else "- (not ranked)"
        print(
            f"| {r['setting']} | {r['kept']} | {r['candidates']:.2f} | {r['ranked']:.2f} | {r['pairs'][1.0]} "
            f"| {r['pairs'][2.0]} | {best} | {r['cost']:.4f} | {r['per_row']:.6f} | {r['per_row'] / base:.2f}x |"
        )
    print("\ncost by stage (USD) and calls:")
    for r in rows:
        print(
            f"  {r['setting']:<9} "
            + ", ".join(f"{s} {v:.4f} ({r['calls'].get(s, 0)} calls)" for s, v in r["by_stage"].items())
        )


if __name__ == "__main__":
    main()
