"""Throughput of the real pipeline against a latency-simulating server, next to a bare SDK loop.

``python -m bench.throughput`` (defaults: 10,000 calls, 200 ms latency, concurrency 64; bound = 320 req/s).
Prints achieved requests/s, the fraction of the bound ``concurrency / latency``, client CPU per call and the
peak RSS of the client process, for the bare ``AsyncOpenAI`` loop and for ``evol run`` in-process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import tempfile
import time
from pathlib import Path

from bench.server import spawn
from evol.config import RunConfig


def start_server(latency: float, tokens: int, error_rate: float, rate_429: float) -> tuple[subprocess.Popen, str]:
    return spawn(
        "--latency", str(latency), "--tokens", str(tokens), "--error-rate", str(error_rate), "--rate-429", str(rate_429)
    )


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def measure(fn) -> dict:
    """Wall time and CPU of ``fn``, counting children that ended inside it (Prefect's temporary server)."""
    t0, c0, k0 = time.perf_counter(), time.process_time(), _children_cpu()
    calls = fn()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0 + _children_cpu() - k0
    return {"calls": calls, "seconds": wall, "rps": calls / wall, "cpu_ms_per_call": cpu / calls * 1000}


def bare_sdk(url: str, calls: int, concurrency: int) -> int:
    """The baseline: one AsyncOpenAI client (default transport), a semaphore, a gather."""
    import openai

    async def go() -> int:
        client = openai.AsyncOpenAI(base_url=url, api_key="bench", max_retries=0)
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with sem:
                r = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": f"q {i}"}])
                assert r.choices[0].message.content

        await asyncio.gather(*(one(i) for i in range(calls)))
        await client.close()
        return calls

    return asyncio.run(go())


def bench_config(url: str, calls: int, concurrency: int, out: Path, workdir: Path) -> RunConfig:
    """One round over calls / 3 seeds with no outputs, into ``out``: three calls a seed (evolve, judge, respond);
    the seeds stay out of the dataset, or answering them would be a fourth."""
    seeds = workdir / "seeds.jsonl"
    seeds.write_text(
        "".join(
            json.dumps({"instruction": f"Explain topic number {i} to a curious student."}) + "\n"
            for i in range(calls // 3)
        )
    )
    return RunConfig(
        seeds=str(seeds),
        base_url=url,
        model="m",
        rounds=1,
        concurrency=concurrency,
        out=str(out),
        max_retries=8,
        include_seeds=False,
    )


def pipeline(url: str, calls: int, concurrency: int, workdir: Path) -> int:
    """The real ``evol run``: one round costs three calls per seed (evolve, judge, respond)."""
    from evol.engines.local import execute

    manifest = asyncio.run(execute(bench_config(url, calls, concurrency, workdir / "run", workdir)))
    return sum(manifest.usage.calls.values())


#: how long the Prefect engine's run spent importing Prefect (and evol.engines.prefect), part of its wall time
PREFECT_IMPORT: dict[str, float] = {}


def pipeline_prefect(url: str, calls: int, concurrency: int, workdir: Path) -> int:
    """The same run on the default engine, as ``python -m evol run`` starts it: Prefect's temporary server (unless
    PREFECT_API_URL names one) launched first, booting while Prefect is imported, and stopped at the end."""
    from evol.engines.prefect.server import launch

    server = launch()
    t0 = time.perf_counter()
    from evol.engines.prefect.evol_flow import (
        run_with_prefect,  # imports Prefect: counted in the run's time, and reported on its own
    )

    PREFECT_IMPORT["seconds"] = time.perf_counter() - t0

    manifest = run_with_prefect(bench_config(url, calls, concurrency, workdir / "run-prefect", workdir), server=server)
    return sum(manifest.usage.calls.values())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=10_000)
    p.add_argument("--latency", type=float, default=0.2)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--tokens", type=int, default=100, help="words per answer")
    p.add_argument("--error-rate", type=float, default=0.0)
    p.add_argument("--rate-429", type=float, default=0.0)
    p.add_argument("--only", choices=("sdk", "pipeline"), help="run one side only")
    p.add_argument(
        "--prefect",
        action="store_true",
        help="also run the pipeline on the Prefect engine (includes its start, and its temporary server's unless PREFECT_API_URL is set)",
    )
    a = p.parse_args()
    bound = a.concurrency / a.latency
    server, url = start_server(a.latency, a.tokens, a.error_rate, a.rate_429)
    rows = []
    try:
        if a.only != "pipeline":
            rows.append(("bare AsyncOpenAI loop", measure(lambda: bare_sdk(url, a.calls, a.concurrency))))
        if a.only != "sdk":
            with tempfile.TemporaryDirectory() as tmp:
                rows.append(
                    ("evol run --engine local", measure(lambda: pipeline(url, a.calls, a.concurrency, Path(tmp))))
                )
                if a.prefect:
                    rows.append(
                        (
                            "evol run (Prefect)",
                            measure(lambda: pipeline_prefect(url, a.calls, a.concurrency, Path(tmp))),
                        )
                    )
    finally:
        server.terminate()
        server.wait(10)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"latency {a.latency * 1000:.0f} ms, concurrency {a.concurrency}, bound {bound:.0f} req/s")
    print(f"{'client':<26}{'calls':>8}{'req/s':>9}{'of bound':>10}{'CPU ms/call':>13}")
    for name, r in rows:
        print(f"{name:<26}{r['calls']:>8}{r['rps']:>9.1f}{r['rps'] / bound:>10.2f}{r['cpu_ms_per_call']:>13.2f}")
    if "seconds" in PREFECT_IMPORT:
        print(f"of the Prefect engine's wall time, importing Prefect took {PREFECT_IMPORT['seconds']:.2f} s")
    print(f"peak RSS of this process: {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
