"""``--concurrency auto`` against endpoints with a capacity, next to the fixed concurrencies around it.

``python -m bench.concurrency`` (defaults: capacity 32, 200 ms latency, 1,600 seeds × 1 round = 4,800 calls per
run). Two servers (``bench.server --capacity``): one that answers 429 above its capacity, one that queues (its
latency grows with the queue). For each, ``evol run --engine local`` with every fixed concurrency of ``--fixed``
and with ``auto``; prints calls/s of the whole run, the share of requests the server answered 429 after the first
ten seconds, and for auto where its limit ended (the trace is in the run's manifest).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Literal

from bench.server import spawn


def start(capacity: int, latency: float, queue: bool, stats: Path) -> tuple[subprocess.Popen, str]:
    return spawn(
        "--latency", str(latency), "--capacity", str(capacity), "--stats", str(stats), *(["--queue"] if queue else [])
    )


def one_run(
    capacity: int, latency: float, queue: bool, seeds: int, concurrency: int | Literal["auto"], warmup: float
) -> dict:
    from evol.config import RunConfig
    from evol.engines.local import execute

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        stats = work / "stats.json"
        proc, url = start(capacity, latency, queue, stats)
        try:
            (work / "seeds.jsonl").write_text(
                "".join(
                    json.dumps({"instruction": f"Explain topic number {i} to a curious student."}) + "\n"
                    for i in range(seeds)
                )
            )
            config = RunConfig(
                seeds=str(work / "seeds.jsonl"),
                base_url=url,
                model="m",
                rounds=1,
                concurrency=concurrency,
                max_concurrency=256,
                out=str(work / "run"),
                max_retries=12,
            )
            t0 = time.perf_counter()
            manifest = asyncio.run(execute(config))
            seconds = time.perf_counter() - t0
        finally:
            proc.terminate()
            proc.wait(10)
        served = {int(k): v for k, v in json.loads(stats.read_text())["served"].items()}
        rejected = {int(k): v for k, v in json.loads(stats.read_text())["rejected"].items()}
    late_bad = sum(n for s, n in rejected.items() if s >= warmup)
    late_good = sum(n for s, n in served.items() if s >= warmup)
    calls = sum(manifest.usage.calls.values())
    books = manifest.concurrency
    return {
        "calls": calls,
        "failed": manifest.counts.failed,
        "rps": calls / seconds,
        "late_429": late_bad / max(1, late_bad + late_good),
        "final": books.final if books else None,
        "peak": books.peak if books else None,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--capacity", type=int, default=32)
    p.add_argument("--latency", type=float, default=0.2)
    p.add_argument("--seeds", type=int, default=1600, help="seeds of each run")
    p.add_argument("--fixed", default="16,24,32,40,48", help="the fixed concurrencies to compare with")
    p.add_argument("--warmup", type=float, default=10.0, help="seconds after which 429s are counted")
    p.add_argument("--only", choices=("429", "queue"))
    a = p.parse_args()
    settings: list[int | Literal["auto"]] = [int(x) for x in a.fixed.split(",")] + ["auto"]
    bound = a.capacity / a.latency
    print(
        f"capacity {a.capacity}, latency {a.latency * 1000:.0f} ms: bound {bound:.0f} req/s, {a.seeds} seeds, 1 round"
    )
    for queue in (False, True):
        if a.only and (a.only == "queue") != queue:
            continue
        kind = "queues above capacity" if queue else "429 above capacity"
        print(f"\nserver that {kind}")
        print(
            f"{'concurrency':<13}{'calls':>7}{'req/s':>8}{'of bound':>10}{'429 after warm-up':>19}{'auto limit end/peak':>21}"
        )
        rows = {c: one_run(a.capacity, a.latency, queue, a.seeds, c, a.warmup) for c in settings}
        best = max(r["rps"] for c, r in rows.items() if c != "auto")
        for c, r in rows.items():
            limit = f"{r['final']}/{r['peak']}" if r["final"] is not None else "-"
            print(f"{c!s:<13}{r['calls']:>7}{r['rps']:>8.1f}{r['rps'] / bound:>10.2f}{r['late_429']:>18.2%}{limit:>21}")
        print(f"auto / best fixed: {rows['auto']['rps'] / best:.3f}")


if __name__ == "__main__":
    main()
