"""A latency-simulating OpenAI-compatible server for benchmarks, run in its own process.

``python -m bench.server --port 8321 --latency 0.2 --jitter 0.02 --tokens 200 --error-rate 0.01 --rate-429 0.01``

With ``--capacity N`` it serves at most N requests at once and answers 429 above that (``--queue``: queues them,
so latency grows with the queue); ``--stats FILE`` writes what it served and refused, per second, when it stops.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import subprocess
import sys
import time
import urllib.request
from functools import lru_cache

from aiohttp import web

from evol.llm.endpoint import free_port
from evol.testing.capacity import CapacityScript
from evol.testing.server import Reply, ScriptedServer, last_user


class LatencyScript:
    """Answers every request after ``latency`` ± ``jitter`` seconds; some fail on purpose."""

    def __init__(
        self,
        latency: float,
        jitter: float = 0.0,
        tokens: int = 100,
        error_rate: float = 0.0,
        rate_429: float = 0.0,
        seed: int = 0,
    ):
        self.latency, self.jitter, self.tokens = latency, jitter, tokens
        self.error_rate, self.rate_429 = error_rate, rate_429
        self.rng = random.Random(seed)

    def __call__(self, request: dict) -> Reply:
        delay = max(0.0, self.latency + self.rng.uniform(-self.jitter, self.jitter))
        roll = self.rng.random()
        if roll < self.rate_429:
            return Reply(status=429, headers={"retry-after": "0.5"}, delay=delay)
        if roll < self.rate_429 + self.error_rate:
            return Reply(status=503, delay=delay)
        prompt = last_user(request)
        if "First instruction:" in prompt:
            return Reply(content="Not Equal", delay=delay)
        digest = hashlib.blake2b(prompt.encode(), digest_size=8).digest()
        return Reply(content=prose(random.Random(digest), self.tokens), delay=delay)


_SYLLABLES = tuple(
    o + v + c
    for o in (
        "",
        "b",
        "c",
        "d",
        "f",
        "g",
        "h",
        "j",
        "k",
        "l",
        "m",
        "n",
        "p",
        "r",
        "s",
        "t",
        "v",
        "w",
        "st",
        "tr",
        "pl",
        "ch",
        "sh",
        "th",
    )
    for v in ("a", "e", "i", "o", "u", "ea", "ou", "ai")
    for c in ("", "", "n", "r", "s", "t", "ck", "ng")
)


@lru_cache(maxsize=1)
def vocabulary(size: int = 8192) -> tuple[str, ...]:
    """Pseudo-words of 1-4 syllables, the same in every process."""
    rng = random.Random(7)
    return tuple(sorted({"".join(rng.choices(_SYLLABLES, k=rng.choice((1, 2, 2, 3, 3, 4)))) for _ in range(size)}))


def prose(rng: random.Random, words: int) -> str:
    """``words`` words in sentences, three in ten from 64 common ones: different prompts get text that differs
    the way real answers do (shared common words, mostly different n-grams), so dedup does realistic work."""
    vocab = vocabulary()
    picked = [rng.choice(vocab[:64]) if rng.random() < 0.3 else rng.choice(vocab) for _ in range(words)]
    sentences = [" ".join(picked[i : i + 12]).capitalize() + "." for i in range(0, len(picked), 12)]
    return " ".join(sentences)


def spawn(*options: str) -> tuple[subprocess.Popen, str]:
    """This server in a process of its own (so its CPU is not the client's) with ``options``; its base URL once
    it answers."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bench.server", "--port", str(port), *options])
    url = f"http://127.0.0.1:{port}/v1"
    for _ in range(100):
        try:
            urllib.request.urlopen(f"{url}/models", timeout=1).read()
            return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("benchmark server did not start")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--latency", type=float, default=0.2)
    p.add_argument("--jitter", type=float, default=0.0)
    p.add_argument("--tokens", type=int, default=100)
    p.add_argument("--error-rate", type=float, default=0.0)
    p.add_argument("--rate-429", type=float, default=0.0)
    p.add_argument("--capacity", type=int, help="serve at most this many at once; 429 above it")
    p.add_argument("--queue", action="store_true", help="with --capacity: queue the rest instead of a 429")
    p.add_argument("--stats", help="with --capacity: write served and refused requests per second here at the end")
    a = p.parse_args()
    script = LatencyScript(a.latency, a.jitter, a.tokens, a.error_rate, a.rate_429)
    capacity = None
    if a.capacity:
        # the capacity holds each request for the latency; the answers themselves come at once
        capacity = CapacityScript(a.capacity, a.latency, LatencyScript(0.0, 0.0, a.tokens), queue=a.queue)
    srv = ScriptedServer(capacity or script, port=a.port, record=False)
    app = srv.app()
    if capacity is not None and a.stats:

        async def write_stats(_app) -> None:
            served, rejected = capacity.served, capacity.rejected
            with open(a.stats, "w") as f:
                json.dump({"served": served, "rejected": rejected, "most": capacity.most}, f)

        app.on_cleanup.append(write_stats)
    web.run_app(app, host="127.0.0.1", port=a.port, access_log=None, print=None, backlog=1024)


if __name__ == "__main__":
    main()
