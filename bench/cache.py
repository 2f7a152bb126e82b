"""Lookups in a large call cache: is an answered call found (or known missing) in well under 0.1 ms?

    python -m bench.cache                          # 1,000,000 entries of ~1,000 characters
    python -m bench.cache --entries 100000 --text-chars 300

Fills a fresh ``CallCache`` (the run folder's ``calls.sqlite``) with N answers in one transaction through the
cache's own connection, reopens it as a resumed run would, then times ``get()`` one lookup at a time for random
keys that are there (hits) and keys that are not (misses), and the whole hit path of a resumed run
(``call_key`` of the messages + ``get``). Also times ``put()``, which commits each answer on its own. The OS page
cache is warm (the file was just written); a cold disk adds its read latency to the first lookups.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from evol.config import Sampling
from evol.llm.cache import CallCache, call_key
from evol.models import Completion, Usage
from evol.testing.words import VOCAB

LEGACY_SCHEMA = (
    "CREATE TABLE calls (key BLOB PRIMARY KEY, text TEXT NOT NULL, finish_reason TEXT, prompt_tokens INTEGER,"
    " completion_tokens INTEGER, model TEXT) WITHOUT ROWID"
)
WORDS = [
    *VOCAB,
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "that",
    "for",
    "with",
    "as",
    "on",
    "by",
    "it",
    "this",
    "be",
    "are",
    "from",
    "or",
    "an",
    "at",
]


def key_of(i: int) -> bytes:
    """A 20-byte key, as ``call_key`` makes (its digest's first 20 bytes)."""
    return hashlib.sha256(i.to_bytes(8, "little")).digest()[:20]


def miss_key(i: int) -> bytes:
    return hashlib.sha256(b"miss" + i.to_bytes(8, "little")).digest()[:20]


def texts(n_chars: int, rng: random.Random, pool_size: int = 4096) -> list[str]:
    """A pool of varied answer texts of about ``n_chars`` characters (rows pick one and add their index)."""
    out = []
    for _ in range(pool_size):
        words, size = [], 0
        while size < n_chars:
            w = rng.choice(WORDS)
            words.append(w)
            size += len(w) + 1
        out.append(" ".join(words)[:n_chars])
    return out


def fill(cache: CallCache, n: int, n_chars: int, seed: int, chunk: int = 50_000) -> float:
    """N rows in one transaction through the cache's connection; returns seconds."""
    rng = random.Random(seed)
    pool = texts(n_chars, rng)
    t0 = time.perf_counter()
    with cache._lock:
        db = cache._db
        db.execute("BEGIN")
        for start in range(0, n, chunk):
            rows = [
                (key_of(i), f"{i} {pool[i % len(pool)]}", "stop", 40 + i % 200, n_chars // 5, "m")
                for i in range(start, min(n, start + chunk))
            ]
            db.executemany("INSERT OR REPLACE INTO calls VALUES (?,?,?,?,?,?)", rows)
        db.execute("COMMIT")
    return time.perf_counter() - t0


def time_each(fn, items) -> list[float]:
    """Microseconds of each call of ``fn(item)``, one at a time."""
    out = []
    clock = time.perf_counter_ns
    for item in items:
        t0 = clock()
        fn(item)
        out.append((clock() - t0) / 1000)
    return out


def summary(us: list[float]) -> dict:
    us = sorted(us)
    return {
        "median_us": round(statistics.median(us), 2),
        "p99_us": round(us[int(len(us) * 0.99) - 1], 2),
        "max_us": round(us[-1], 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--entries", type=int, default=1_000_000)
    p.add_argument("--lookups", type=int, default=100_000, help="timed hits, and as many misses")
    p.add_argument("--puts", type=int, default=5_000, help="timed put() calls (one commit each)")
    p.add_argument("--text-chars", type=int, default=1000, help="characters per cached answer")
    p.add_argument("--dir", type=Path, help="where to put calls.sqlite (default: a temporary folder, removed)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--legacy-schema",
        action="store_true",
        help="the first schema (WITHOUT ROWID, the answer inside the key's b-tree), for comparison",
    )
    a = p.parse_args()

    with tempfile.TemporaryDirectory(dir=a.dir) as tmp:
        path = Path(tmp) / "calls.sqlite"
        if a.legacy_schema:  # CallCache keeps the table it finds
            with sqlite3.connect(path) as db:
                db.execute(LEGACY_SCHEMA)
        cache = CallCache(path)
        fill_s = fill(cache, a.entries, a.text_chars, a.seed)
        cache.close()
        size_mb = (path.stat().st_size + sum(f.stat().st_size for f in path.parent.glob("calls.sqlite-*"))) / 2**20

        cache = CallCache(path)  # reopened, as by a resumed run
        rng = random.Random(a.seed + 1)
        hit_keys = [key_of(rng.randrange(a.entries)) for _ in range(a.lookups)]
        miss_keys = [miss_key(i) for i in range(a.lookups)]
        for k in hit_keys[:1000]:  # warm-up: the interpreter's and SQLite's first-use costs
            cache.get(k)
        assert all(cache.get(k) is not None for k in hit_keys[:100]) and cache.get(miss_keys[0]) is None
        hits = summary(time_each(cache.get, hit_keys))
        misses = summary(time_each(cache.get, miss_keys))

        # a resumed run's whole path for one call: the key of its messages, then the lookup
        sampling = Sampling()
        prompts = [[{"role": "user", "content": f"Prompt {i}: " + "x" * 800}] for i in range(a.lookups // 10)]
        full = summary(
            time_each(lambda m: cache.get(call_key("loopback/v1", "m", m, sampling, "s1.r1:evolve")), prompts)
        )

        answer = Completion(
            text="y" * a.text_chars, finish_reason="stop", usage=Usage(prompt_tokens=50, completion_tokens=200)
        )
        puts = summary(time_each(lambda i: cache.put(miss_key(10**9 + i), answer), range(a.puts)))
        assert len(cache) == a.entries + a.puts
        cache.close()

    print(
        f"call cache: {a.entries:,} entries of ~{a.text_chars} characters, {size_mb:,.0f} MB on disk, "
        f"filled in {fill_s:.1f} s ({a.entries / fill_s:,.0f} rows/s, one transaction)"
    )
    print(f"{'operation':<34}{'median µs':>11}{'p99 µs':>10}{'max µs':>10}")
    for name, s in (
        ("get() hit", hits),
        ("get() miss", misses),
        ("call_key() + get() hit", full),
        ("put() (own commit each)", puts),
    ):
        print(f"{name:<34}{s['median_us']:>11.1f}{s['p99_us']:>10.1f}{s['max_us']:>10.0f}")
    target = 100.0
    met = hits["p99_us"] < target and misses["p99_us"] < target
    print(f"target: under {target:.0f} µs per lookup -> {'met' if met else 'MISSED'} (p99 of hits and misses)")
    print(
        json.dumps(
            {
                "bench": "cache",
                "schema": "legacy" if a.legacy_schema else "current",
                "entries": a.entries,
                "text_chars": a.text_chars,
                "file_mb": round(size_mb, 1),
                "fill_s": round(fill_s, 2),
                "get_hit": hits,
                "get_miss": misses,
                "key_and_get_hit": full,
                "put": puts,
                "target_us": target,
                "target_met": met,
            }
        )
    )


if __name__ == "__main__":
    main()
