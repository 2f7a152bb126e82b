"""A scripted endpoint with a capacity: it serves at most ``capacity`` requests at once, and above that either
answers 429 (a provider's tier, a gateway) or queues them, so latency grows with the queue (a saturated vLLM).

Tests and ``bench.server`` (``--capacity``, ``--queue``) use it to check that ``--concurrency auto`` finds the
limit by itself. It counts what it served, rejected and the most it ever held, per second of its life.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable

from evol.testing.replies import Reply


class CapacityScript:
    """An async script for ``ScriptedServer``: ``answer(request)`` after ``latency`` seconds, at most
    ``capacity`` at once; ``queue`` makes the rest wait their turn instead of answering 429."""

    def __init__(
        self,
        capacity: int,
        latency: float,
        answer: Callable[[dict], Reply | str] = lambda request: "ok",
        *,
        queue: bool = False,
        retry_after: float | None = None,
        status: int = 429,
    ):
        self.capacity, self.latency, self.answer = capacity, latency, answer
        self.queue, self.retry_after, self.status = queue, retry_after, status
        self.serving = 0
        self.most = 0  # the most requests ever served at once
        self.started = time.monotonic()
        self.served: Counter[int] = Counter()  # answered requests by second since the start
        self.rejected: Counter[int] = Counter()  # 429s (or ``status``) by second since the start
        self._slots: asyncio.Semaphore | None = None  # made on the server's loop

    async def __call__(self, request: dict) -> Reply | str:
        second = int(time.monotonic() - self.started)
        if self.queue:
            if self._slots is None:
                self._slots = asyncio.Semaphore(self.capacity)
            async with self._slots:
                return await self._serve(request)
        if self.serving >= self.capacity:
            self.rejected[second] += 1
            headers = {"retry-after": f"{self.retry_after:g}"} if self.retry_after is not None else {}
            return Reply(status=self.status, content="over capacity", headers=headers)
        return await self._serve(request)

    async def _serve(self, request: dict) -> Reply | str:
        self.serving += 1
        self.most = max(self.most, self.serving)
        try:
            await asyncio.sleep(self.latency)
        finally:
            self.serving -= 1
        self.served[int(time.monotonic() - self.started)] += 1
        return self.answer(request)

    def share_rejected(self, after: float = 0.0) -> float:
        """The share of requests answered 429 from ``after`` seconds on."""
        bad = sum(n for s, n in self.rejected.items() if s >= after)
        good = sum(n for s, n in self.served.items() if s >= after)
        return bad / max(1, bad + good)
