"""How long a small run takes from the command to its exit, on each engine: the cost of starting, not of calls.

    python -m bench.startup              # 3 seeds, 1 round (9 calls) against bench.server with no latency, 3 times each
    python -m bench.startup --runs 5

Engines: ``--engine local``; the default Prefect engine against a Prefect server that is already running
(``PREFECT_API_URL`` set; the benchmark starts one with ``prefect server start`` in a temporary PREFECT_HOME
and waits until it answers, outside the timing); and the default engine with its temporary server (nothing
set: what a first-time user gets). Each run is ``python -m evol run`` in a fresh process; the medians are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.throughput import start_server
from evol.llm.endpoint import LOOPBACK_OPENER, free_port

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ["Write a haiku about autumn.", "Explain how a bicycle stays upright.", "List three uses of vinegar."]


def one_run(url: str, seeds: Path, out: Path, engine: str, env: dict[str, str]) -> float:
    cmd = [sys.executable, "-m", "evol", "--quiet", "run", "--seeds", str(seeds), "--base-url", url, "--model", "m"]
    cmd += ["--rounds", "1", "--out", str(out), "--engine", engine, "--no-seeds"]  # as measured: 9 calls
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"bench.startup: the run failed (exit {r.returncode}): {r.stderr.strip()[-2000:]}")
    return seconds


def running_prefect_server(home: Path) -> tuple[subprocess.Popen, str]:
    """``prefect server start`` in its own PREFECT_HOME; returns once its API answers."""
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    prefect = Path(sys.executable).parent / "prefect"
    proc = subprocess.Popen(
        [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    api = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with LOOPBACK_OPENER.open(f"{api}/health", timeout=2) as r:
                if r.status == 200:
                    return proc, api
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("bench.startup: prefect server start did not answer within 180 s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3, help="runs of each engine (default 3)")
    a = p.parse_args()
    base = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "OPENAI_API_KEY", "EVOL_API_KEY")}
    backend, url = start_server(0.0, 20, 0.0, 0.0)
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        seeds = work / "seeds.jsonl"
        seeds.write_text("".join(json.dumps({"instruction": s}) + "\n" for s in SEEDS))
        home = work / "prefect-home"
        server, api = running_prefect_server(home)
        try:
            engines = {
                "--engine local": ("local", base),
                "Prefect, running server": ("prefect", {**base, "PREFECT_HOME": str(home), "PREFECT_API_URL": api}),
                "Prefect, temporary server": ("prefect", {**base, "PREFECT_HOME": str(work / "temp-home")}),
            }
            for i in range(a.runs):  # interleaved, so a slower minute of the machine hits every engine alike
                for label, (engine, env) in engines.items():
                    seconds = one_run(url, seeds, work / f"out-{engine}-{i}-{len(results.get(label, []))}", engine, env)
                    results.setdefault(label, []).append(seconds)
        finally:
            server.terminate()
            server.wait(30)
            backend.terminate()
            backend.wait(10)
    print(f"{'engine':<28}{'median s':>10}   runs")
    for label, times in results.items():
        print(f"{label:<28}{statistics.median(times):>10.2f}   {', '.join(f'{t:.2f}' for t in times)}")


if __name__ == "__main__":
    main()
