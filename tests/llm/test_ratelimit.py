import asyncio
import json
import time

import pytest

from evol.llm.ratelimit import RateLimiter, _duration, estimate_tokens
from evol.testing.server import Reply, ScriptedServer

from ..conftest import SEEDS, run_cli


def max_in_window(times, window):
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


@pytest.mark.slow
def test_sliding_window_never_exceeds_the_request_limit():
    async def go():
        lim = RateLimiter(rpm=5, window=0.5)
        stamps = []
        for _ in range(16):
            await lim.acquire(1)
            stamps.append(time.monotonic())
        return stamps

    stamps = asyncio.run(go())
    assert max_in_window(stamps, 0.5) <= 5
    assert stamps[-1] - stamps[0] >= 1.0  # 16 requests at 5 per half-second need at least three waits


def test_token_window_uses_the_estimate_then_the_real_usage():
    async def go():
        lim = RateLimiter(tpm=100, window=0.3)
        h = await lim.acquire(90)
        lim.settle(h, 10)  # the server said 10, not 90: room for more at once
        t0 = time.monotonic()
        await lim.acquire(80)
        fast = time.monotonic() - t0
        t0 = time.monotonic()
        await lim.acquire(50)  # 10 + 80 + 50 > 100: must wait for the window
        return fast, time.monotonic() - t0

    fast, slow = asyncio.run(go())
    assert fast < 0.1 and slow >= 0.2


def test_a_pause_holds_every_request_and_headers_trigger_one():
    async def go():
        lim = RateLimiter()
        lim.observe(
            {
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-limit-requests": "500",
                "x-ratelimit-reset-requests": "300ms",
            }
        )
        t0 = time.monotonic()
        await asyncio.gather(lim.acquire(1), lim.acquire(1))
        return time.monotonic() - t0

    assert asyncio.run(go()) >= 0.25
    assert _duration("6m0s") == 360 and _duration("20ms") == 0.02 and _duration("1.5") == 1.5
    assert estimate_tokens([{"content": "x" * 400}], 50) == 150


@pytest.mark.slow
def test_429_storm_then_success_under_the_configured_rate(tmp_path):
    """The server refuses with 429 + retry-after for its first second; the run finishes within the limit."""
    start = {}

    def script(req):
        now = time.monotonic()
        start.setdefault("t", now)
        if now - start["t"] < 1.0:
            return Reply(status=429, headers={"retry-after": "0.3"}, content="slow down")
        prompt = req["messages"][-1]["content"]
        if "First instruction:" in prompt:
            return "Not Equal"
        return f"A distinct and thorough reply number {abs(hash(prompt))} about the matter at hand, in detail."

    cfg = tmp_path / "evol.toml"
    cfg.write_text("rpm = 8\nrate_window = 1.0\n")
    with ScriptedServer(script) as srv:
        proc = run_cli(
            "run",
            "--config",
            str(cfg),
            "--seeds",
            str(SEEDS),
            "--limit",
            "8",
            "--rounds",
            "1",
            "--base-url",
            srv.base_url,
            "--out",
            str(tmp_path / "o"),
        )
        arrivals = list(srv.arrivals)
    assert proc.returncode == 0, proc.stderr
    m = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert m["counts"]["failed"] == 0 and m["counts"]["attempts"] == 8
    # the limiter stamps a request when it lets it go, the server when it arrives: on a busy machine the first
    # request's connection set-up delays its arrival by tens of ms, so the server's window is read a little short
    # (a run without the limit would put all 16 first tries in the first instant)
    assert max_in_window(arrivals, 0.9) <= 8, " ".join(f"{t - arrivals[0]:.3f}" for t in arrivals)
    assert len(arrivals) > sum(m["usage"]["calls"].values())  # some calls met a 429 first, and were retried
