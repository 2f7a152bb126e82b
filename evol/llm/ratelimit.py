"""Client-wide rate limiting: requests and tokens per minute, and pauses the server asks for.

Sliding 60-second windows (not token buckets), so the configured rpm and tpm are never exceeded in any
minute. A 429 or a near-empty ``x-ratelimit-remaining-*`` header pauses every request of the client, not
just the one that met it: that is what keeps a run just under a provider's limit instead of bouncing off it.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import Mapping

WINDOW = 60.0


class RateLimiter:
    def __init__(
        self, rpm: float | None = None, tpm: float | None = None, window: float = WINDOW, clock=time.monotonic
    ):
        self.rpm, self.tpm = rpm, tpm
        # the provider counts arrivals, which jitter in transit: count over a slightly longer window than it does
        self.window = window * 1.01 + 0.05
        self._clock = clock
        self._requests: deque[float] = deque()
        self._tokens: deque[list] = deque()  # [time, tokens, live], tokens corrected once usage is known
        self._token_sum = 0
        self._paused_until = 0.0
        self._lock = asyncio.Lock()
        self.waited = 0.0  # seconds spent waiting, for the summary

    async def acquire(self, estimate: int) -> list | None:
        """Wait for room for one request of about ``estimate`` tokens; returns a handle for ``settle``."""
        if not (self.rpm or self.tpm) and not self._lock.locked() and self._clock() >= self._paused_until:
            return None  # no limits and no pause: nothing to count or wait for
        async with self._lock:  # one waiter at a time keeps the order fair and the windows exact
            while True:
                now = self._clock()
                self._expire(now)
                wait = self._paused_until - now
                if self.rpm and len(self._requests) >= self.rpm:
                    wait = max(wait, self._requests[0] + self.window - now)
                if self.tpm and self._tokens and self._token_sum + estimate > self.tpm:
                    wait = max(wait, self._tokens[0][0] + self.window - now)
                if wait <= 0:
                    break
                self.waited += wait
                await asyncio.sleep(wait)
            self._requests.append(now)
            if not self.tpm:
                return None
            entry = [now, estimate, True]
            self._tokens.append(entry)
            self._token_sum += estimate
            return entry

    def settle(self, handle: list | None, actual: int) -> None:
        """Replace the estimate with the tokens the server reported."""
        if handle is not None and actual > 0:
            if handle[2]:  # still inside the window
                self._token_sum += actual - handle[1]
            handle[1] = actual

    def pause(self, seconds: float) -> None:
        """Hold every request of this client for ``seconds`` (after a 429)."""
        self._paused_until = max(self._paused_until, self._clock() + max(0.0, seconds))

    def observe(self, headers: Mapping[str, str]) -> None:
        """Pause until the window resets when the provider says almost nothing is left."""
        for kind in ("requests", "tokens"):
            remaining = _number(headers.get(f"x-ratelimit-remaining-{kind}"))
            limit = _number(headers.get(f"x-ratelimit-limit-{kind}"))
            reset = _duration(headers.get(f"x-ratelimit-reset-{kind}"))
            if remaining is None or reset is None:
                continue
            if remaining <= 1 or (limit and remaining / limit < 0.02):
                self.pause(reset)

    def _expire(self, now: float) -> None:
        while self._requests and self._requests[0] <= now - self.window:
            self._requests.popleft()
        while self._tokens and self._tokens[0][0] <= now - self.window:
            entry = self._tokens.popleft()
            entry[2] = False
            self._token_sum -= entry[1]


def estimate_tokens(messages: list[dict], max_tokens: int) -> int:
    """Providers count the prompt and the requested max_tokens against a tokens-per-minute limit."""
    chars = sum(len(str(m.get("content", ""))) for m in messages)
    return chars // 4 + max_tokens


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def _duration(value: str | None) -> float | None:
    """OpenAI writes resets as '1s', '6m0s', '20ms'; others send plain seconds."""
    if not value:
        return None
    plain = _number(value)
    if plain is not None:
        return plain
    parts = re.findall(r"([\d.]+)(ms|s|m|h)", value)
    if not parts:
        return None
    return sum(float(n) * _UNITS[u] for n, u in parts)
