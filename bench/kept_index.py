"""What the round's dedup index costs the chunks on Dask workers: its snapshot's size, the flow's write, a worker's read.

    python -m bench.kept_index                        # 10k and 100k kept rows, local folder and moto's S3 server
    python -m bench.kept_index --sizes 10000 --no-s3  # a quicker run

The index is built as a run builds it (the first tenth of the rows are seeds, each its own lineage; the rest are
evolutions of them, four to a seed) from bench.corpus's instructions at the run's defaults (threshold 0.9, ratio).
The flow's side, ``chunks.write_kept``: the snapshot made (``Deduper.snapshot``) and written into the run folder.
A worker's side, ``chunks.kept_index``: read and loaded (``Deduper.from_snapshot``), in a fresh process each
time, so its RSS growth is the loaded index's alone; then a thousand ``check_settled`` lookups against the loaded
index and the flow's, which must decide the same. A worker does this once per round, however many chunks it runs.
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from bench.corpus import corpus
from evol.dedup.index import Deduper


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def build(n: int) -> tuple[Deduper, list[str]]:
    """An index of ``n`` kept rows as a run holds it when a round begins, and texts to look up against it."""
    texts = corpus(n + 1000, seed=7, variant_share=0.0)
    kept, probes = texts[:n], texts[n:]
    seeds = n // 10
    index = Deduper(0.9)
    ids = [f"s{i}" for i in range(seeds)]
    index.extend(ids, kept[:seeds], ids)
    evolved = range(seeds, n)
    lineages = [f"s{(i - seeds) // 4 % seeds}" for i in evolved]
    index.extend([f"{lin}.r{i}" for lin, i in zip(lineages, evolved, strict=True)], kept[seeds:], lineages)
    index.begin_round()
    # half the probes repeat a kept row (case aside), as the evolutions worth not answering do
    return index, [t.upper() if i % 2 else t for i, t in enumerate(probes[:500])] + [k.upper() for k in kept[:500]]


def load(where: str, env: dict[str, str]) -> dict:
    """A worker's read, in a fresh process: the object read, the index loaded."""
    os.environ.update(env)
    from evol.engines.prefect import chunks

    before = rss_mb()
    t0 = time.perf_counter()
    data = (
        chunks.remote_for(where).read(chunks.kept_name(1))
        if "://" in where
        else (Path(where) / chunks.kept_name(1)).read_bytes()
    )
    t1 = time.perf_counter()
    Deduper.from_snapshot(data)
    t2 = time.perf_counter()
    return {"read": t1 - t0, "load": t2 - t1, "rss_mb": rss_mb() - before}


def measure(n: int, folders: list[tuple[str, str, dict[str, str]]]) -> None:
    from evol.engines.prefect import chunks

    index, probes = build(n)
    t0 = time.perf_counter()
    data = index.snapshot()
    made = time.perf_counter() - t0
    print(f"\n{n:,} kept rows: snapshot {len(data) / 1e6:.1f} MB ({len(data) / n:.0f} B a row), made in {made:.2f} s")
    ctx = get_context("spawn")
    for label, where, env in folders:
        os.environ.update(env)
        t0 = time.perf_counter()
        chunks.write_kept(where, 1, index)
        wrote = time.perf_counter() - t0
        with ProcessPoolExecutor(1, mp_context=ctx) as pool:
            got = pool.submit(load, where, env).result()
        print(
            f"  {label:<12} flow writes {wrote:.2f} s (snapshot included); a worker reads {got['read']:.2f} s, "
            f"loads {got['load']:.2f} s, +{got['rss_mb']:.0f} MB RSS"
        )
    loaded = Deduper.from_snapshot(data)
    t0 = time.perf_counter()
    ours = [loaded.check_settled(p) for p in probes]
    took = time.perf_counter() - t0
    assert ours == [index.check_settled(p) for p in probes], "the loaded index decides otherwise"
    found = sum(m is not None for m in ours)
    print(
        f"  {len(probes)} lookups on the loaded index: {took / len(probes) * 1e3:.2f} ms each, {found} repeats found, same as the flow's"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--no-s3", action="store_true", help="the local folder only")
    args = ap.parse_args(argv)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bench-kept-") as tmp:
        folders: list[tuple[str, str, dict[str, str]]] = [("local disk", tmp, {})]
        server = None
        if not args.no_s3:
            from bench.million import s3_filesystem, start_s3

            server, env = start_s3()
            s3_filesystem(env).mkdir("bench-kept")
            folders.append(("moto S3", "s3://bench-kept/run", env))
        try:
            for n in map(int, args.sizes.split(",")):
                measure(n, folders)
        finally:
            if server is not None:
                server.kill()
                server.wait(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
