"""Peak memory of a large run: ``python -m evol run`` over 100,000 seeds, measured from outside.

    python -m bench.memory                                # 100,000 seeds, 1 round, concurrency 64, --engine local
    python -m bench.memory --engine prefect               # the default engine (Prefect's temporary server included)
    python -m bench.memory --seeds 20000,50000 --rounds 1,2
    python -m bench.memory --seeds 20000 --tracemalloc    # where the memory is, at each round's end

Writes N distinct synthetic seeds (templated instructions, as in ``bench.dedup``) to a temporary JSONL, starts
``bench.server`` in its own process with no latency and short answers, and runs the real command in a subprocess:
each seed costs three calls a round (evolve, judge, respond). The run's peak RSS is the kernel's high-water mark
for that process (``wait4`` rusage), with its RSS sampled from /proc meanwhile to show whether it grows with the
work done; wall time and calls/s come along. Several sizes give the RSS per seed and an extrapolation.

With ``--tracemalloc`` the run is started through a wrapper that snapshots the Python heap whenever the run
writes its outputs (each round's end, when its state is largest) and prints the biggest holders by line; this
slows the run a few times, so use a smaller ``--seeds``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.corpus import distinct
from bench.throughput import start_server
from evol.rundir.manifest import load_manifest

ROOT = Path(__file__).resolve().parent.parent
TARGET_MB = 1536

TRACE = """
import os, sys, tracemalloc
from collections import defaultdict
tracemalloc.start(int(os.environ.get("BENCH_TRACE_FRAMES", "12")))
import evol.engines.local as run
real = run.write_outputs
def where(tb):
    # the innermost frame in evol's own code (or flows'), else the innermost frame
    for frame in reversed(tb):
        if "/evol/" in frame.filename or "/flows/" in frame.filename:
            return f"{frame.filename.rsplit('/', 2)[-2]}/{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}"
    return f"{tb[-1].filename}:{tb[-1].lineno}"
def write_outputs(*args, **kwargs):
    snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
    current, peak = tracemalloc.get_traced_memory()
    by = defaultdict(lambda: [0, 0])
    for stat in snap.statistics("traceback"):
        slot = by[where(stat.traceback)]
        slot[0] += stat.size
        slot[1] += stat.count
    print(f"bench.memory: write_outputs after round {args[0].state.rounds_done} ({args[1]}): traced {current / 2**20:.0f} MB,"
          f" traced peak {peak / 2**20:.0f} MB, top holders (by the innermost evol line that allocated):", file=sys.stderr)
    for name, (size, count) in sorted(by.items(), key=lambda kv: -kv[1][0])[:int(os.environ.get("BENCH_TRACE_TOP", "15"))]:
        print(f"bench.memory:   {size / 2**20:8.1f} MB {count:>9} blocks  {name}", file=sys.stderr)
    return real(*args, **kwargs)
run.write_outputs = write_outputs
from evol.cli.main import main
sys.argv[0] = "evol"
sys.exit(main())
"""


def write_seeds(path: Path, n: int, seed: int = 0) -> None:
    texts = distinct(random.Random(seed), n)
    random.Random(seed + 1).shuffle(texts)
    with open(path, "w", encoding="utf-8") as f:
        for text in texts:
            f.write(json.dumps({"instruction": text}) + "\n")


def rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def run_once(
    seeds: Path,
    n: int,
    rounds: int,
    url: str,
    concurrency: int,
    out: Path,
    trace: bool,
    timeout: float,
    engine: str = "local",
) -> dict:
    cmd = [
        sys.executable,
        *(("-c", TRACE) if trace else ("-m", "evol")),
        "run",
        "--engine",
        engine,
        "--seeds",
        str(seeds),
        "--base-url",
        url,
        "--model",
        "m",
        "--rounds",
        str(rounds),
        "--concurrency",
        str(concurrency),
        "--max-retries",
        "8",
        "--out",
        str(out),
        "--no-seeds",  # the workload the figures were measured on: three calls per seed and round, no seed answered
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "EVOL_API_KEY")}
    log = out.with_suffix(".log")
    samples: list[tuple[float, float]] = []
    t0 = time.perf_counter()
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT, env=env)
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.5):
                mb = rss_mb(proc.pid)
                if mb is not None:
                    samples.append((time.perf_counter() - t0, mb))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            deadline = time.monotonic() + timeout
            while True:  # wait4 gives this child's own rusage, its peak RSS among it
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the run took over {timeout:.0f} s")
                time.sleep(0.2)
        finally:
            done.set()
            if proc.poll() is None and not pid:
                proc.kill()
                proc.wait(10)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    stderr = log.read_text()
    if proc.returncode != 0:
        raise RuntimeError(f"the run failed ({proc.returncode}):\n{stderr[-3000:]}")
    m = load_manifest(out)
    calls = sum(m.usage.calls.values()) - sum(m.usage.calls_from_cache.values())
    # RSS at a quarter, half, three quarters and the end of the run: flat means bounded by concurrency,
    # rising means something grows with the work done
    curve = [max((mb for t, mb in samples if t <= wall * q), default=0.0) for q in (0.25, 0.5, 0.75, 1.0)]
    return {
        "seeds": n,
        "rounds": rounds,
        "concurrency": concurrency,
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "rss_quartiles_mb": [round(x) for x in curve],
        "wall_s": round(wall, 1),
        "calls": calls,
        "calls_per_s": round(calls / wall, 1),
        "kept": m.counts.kept,
        "dataset_rows": m.counts.dataset_rows,
        "cache_mb": round((out / "calls.sqlite").stat().st_size / 2**20, 1),
        "trace": [
            line.removeprefix("bench.memory: ") for line in stderr.splitlines() if line.startswith("bench.memory:")
        ],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="100000", help="seed counts, comma-separated (default 100000)")
    p.add_argument("--rounds", default="1", help="round counts, comma-separated (default 1)")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--tokens", type=int, default=20, help="words per answer of the server (~19 characters each)")
    p.add_argument(
        "--engine",
        choices=("local", "prefect"),
        default="local",
        help="local (default): the run in one process; prefect: the default engine (the peak is that of the largest process, the run's own; Prefect's server is another)",
    )
    p.add_argument(
        "--tracemalloc", action="store_true", help="print the biggest Python heap holders at each round's end"
    )
    p.add_argument("--timeout", type=float, default=4 * 3600, help="seconds allowed for one run")
    p.add_argument("--dir", type=Path, help="work folder (default: a temporary one, removed)")
    a = p.parse_args()
    sizes = [int(x) for x in a.seeds.split(",")]
    rounds = [int(x) for x in a.rounds.split(",")]

    work = Path(tempfile.mkdtemp(prefix="bench-memory-", dir=a.dir))
    server, url = start_server(0.0, a.tokens, 0.0, 0.0)
    rows = []
    try:
        for n in sizes:
            seeds = work / f"seeds-{n}.jsonl"
            write_seeds(seeds, n)
            for r in rounds:
                row = run_once(
                    seeds, n, r, url, a.concurrency, work / f"run-{n}-{r}", a.tracemalloc, a.timeout, a.engine
                )
                rows.append(row)
                print(
                    f"{n:>8} seeds, {r} round(s): peak RSS {row['peak_rss_mb']:,.0f} MB "
                    f"(RSS at 25/50/75/100% of the run: {'/'.join(map(str, row['rss_quartiles_mb']))} MB), "
                    f"{row['wall_s']:,.0f} s, {row['calls']:,} calls, {row['calls_per_s']:.0f} calls/s, "
                    f"cache {row['cache_mb']:,.0f} MB",
                    flush=True,
                )
                for line in row["trace"]:
                    print("   ", line)
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(work, ignore_errors=True)

    summary = {
        "bench": "memory",
        "target_mb": TARGET_MB,
        "tokens": a.tokens,
        "runs": [{k: v for k, v in row.items() if k != "trace"} for row in rows],
    }
    for r in rounds:  # RSS per seed from the two extreme sizes, and what 100,000 seeds would take
        pts = sorted((row["seeds"], row["peak_rss_mb"]) for row in rows if row["rounds"] == r)
        if len(pts) >= 2 and pts[-1][0] > pts[0][0]:
            slope = (pts[-1][1] - pts[0][1]) / (pts[-1][0] - pts[0][0])
            at_100k = pts[-1][1] + slope * (100_000 - pts[-1][0])
            print(f"{r} round(s): {slope * 1024:.2f} KB of peak RSS per seed; 100,000 seeds -> ~{at_100k:,.0f} MB")
            summary[f"kb_per_seed_{r}_rounds"] = round(slope * 1024, 2)
            summary[f"extrapolated_100k_mb_{r}_rounds"] = round(at_100k)
    peak = max(row["peak_rss_mb"] for row in rows)
    summary["target_met"] = peak < TARGET_MB
    print(
        f"target: peak RSS under {TARGET_MB} MB -> {'met' if peak < TARGET_MB else 'MISSED'} (largest: {peak:,.0f} MB)"
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
