"""Adaptive concurrency (``--concurrency auto``): how many requests a client keeps in flight, found from the endpoint.

The limit starts low and doubles each window while latency stays flat (slow start); after the first sign of
congestion it grows by one a window and shrinks by a factor (AIMD, as TCP does): a 429 or a 503 cuts it, and
so does latency well above the lowest seen (requests queueing in the server instead of being served). Back just
below the limit that was cut, it stays there ``PROBE`` windows before trying that limit again (as TCP CUBIC
lingers near its last maximum): an endpoint's capacity rarely moves, and each try costs a 429. A window
is as many answers as the limit, about one round trip's worth; only requests sent under the current limit
count towards it, so one overload is one cut, not one per request that met it. It never exceeds ``maximum``.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections import deque
from dataclasses import dataclass

#: the limit a run starts at (or ``maximum``, if lower)
START = 4
#: a 429, a 503 or queueing keeps this share of the limit (after slow start; slow start halves it)
BACKOFF = 0.9
#: flat windows just below the limit last cut before trying it again
PROBE = 8
#: latency at most this times the lowest window's keeps the limit growing
FLAT = 1.5
#: latency above this times the lowest window's is queueing: the limit is cut
QUEUEING = 2.0
#: seconds added to every latency before comparing: a few milliseconds of jitter of a fast endpoint (or of this
#: process's event loop) are no queueing
FLOOR = 0.05
#: trace points kept; beyond them every other one is dropped (a long run's trace stays small)
TRACE_POINTS = 1000


@dataclass(frozen=True)
class TracePoint:
    seconds: float  # since the limit was made
    limit: int
    why: str  # start, grow, 429, 503, latency


class AdaptiveLimit:
    """At most ``limit`` requests in flight, the limit moved by what the answers say; one per client."""

    def __init__(self, maximum: int, start: int = START, clock=time.monotonic):
        self.maximum = maximum
        self.limit = max(1, min(start, maximum))
        self.inflight = 0
        self.slow_start = True
        self.baseline: float | None = None  # the lowest window median of latency (plus FLOOR)
        self.congested = 0  # answers that were a 429 or a 503
        self.ceiling: int | None = None  # the limit the last cut was from, until a window passes at it
        self._held = 0  # flat full windows spent just below ``ceiling``
        self.answered = 0  # every release
        self._clock = clock
        self._t0 = clock()
        self._epoch = 0  # bumped at each change: answers to requests sent before it do not count
        self._window: list[float] = []
        self._peak = 0  # most in flight since the window opened
        self._waiters: deque[asyncio.Future] = deque()
        self.trace: list[TracePoint] = [TracePoint(0.0, self.limit, "start")]

    async def acquire(self) -> int:
        """Wait for room under the limit; returns the ticket ``release`` takes."""
        while self.inflight >= self.limit:
            fut = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            try:
                await fut
            except BaseException:
                if not fut.cancelled() and fut.done():
                    self._wake()  # woken and cancelled at once: pass the room on
                raise
        self.inflight += 1
        self._peak = max(self._peak, self.inflight)
        return self._epoch

    def release(self, ticket: int, seconds: float | None, status: int | None = None) -> None:
        """One request is over: ``seconds`` it took if it was answered, ``status`` if it failed with one."""
        self.inflight -= 1
        self.answered += 1
        try:
            if status in (429, 503):
                self.congested += 1
                if ticket == self._epoch:  # sent under the current limit: the limit itself is too high
                    self._cut(str(status))
            elif seconds is not None and ticket == self._epoch:
                self._window.append(seconds + FLOOR)
                if len(self._window) >= self.limit:
                    self._decide()
        finally:
            self._wake()

    def _decide(self) -> None:
        median = statistics.median(self._window)
        if self.baseline is None or median < self.baseline:
            self.baseline = median
        ratio = median / self.baseline if self.baseline > 0 else 1.0
        full = self._peak >= self.limit  # a limit the work never filled says nothing about a higher one
        if ratio > QUEUEING:
            self._cut("latency")
        elif ratio <= FLAT and full and self.limit < self.maximum:
            if self.ceiling is not None and self.limit >= self.ceiling:
                self.ceiling = None  # a window passed at the limit once cut: the endpoint takes more now
            if self.ceiling is not None and self.limit + 1 >= self.ceiling and self._held < PROBE - 1:
                self._held += 1  # just below the last overload: hold before trying it again
                self._window, self._peak = [], self.inflight
                return
            grown = self.limit * 2 if self.slow_start else self.limit + 1
            self._set(min(self.maximum, grown), "grow")
        else:
            if ratio > FLAT:
                self.slow_start = False  # latency has started to rise: grow slowly from here
            self._window, self._peak = [], self.inflight

    def _cut(self, why: str) -> None:
        cut = self.limit // 2 if self.slow_start else math.floor(self.limit * BACKOFF)
        self.slow_start = False
        self.ceiling, self._held = self.limit, 0
        self._set(max(1, min(cut, self.limit - 1)), why)

    def _set(self, limit: int, why: str) -> None:
        self.limit = limit
        self._epoch += 1
        self._window, self._peak = [], self.inflight
        self.trace.append(TracePoint(round(self._clock() - self._t0, 3), limit, why))
        if len(self.trace) > TRACE_POINTS:
            self.trace = [*self.trace[:1], *self.trace[1:-1:2], self.trace[-1]]

    def _wake(self) -> None:
        room = self.limit - self.inflight
        while room > 0 and self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                room -= 1

    def books(self) -> dict:
        """What the manifest records: the bounds, where the limit ended, the 429/503 count and the trace."""
        return {
            "mode": "auto",
            "maximum": self.maximum,
            "final": self.limit,
            "peak": max(p.limit for p in self.trace),
            "answers": self.answered,
            "congested": self.congested,
            "trace": [[p.seconds, p.limit, p.why] for p in self.trace],
        }
