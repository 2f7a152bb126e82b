"""--concurrency auto: the limit grows while latency is flat, backs off on 429, 503 and queueing, honours
Retry-After and never passes its maximum; first the controller alone, then a real client against servers with
a capacity."""

import asyncio
import itertools
import time

import pytest

from evol.config import Sampling
from evol.llm.adaptive import BACKOFF, START, AdaptiveLimit
from evol.llm.client import OpenAIChat
from evol.testing.capacity import CapacityScript
from evol.testing.server import ScriptedServer


def _fill(gate: AdaptiveLimit) -> list[int]:
    """As many requests as the limit allows, sent at once (the tickets they got)."""

    async def go():
        return [await gate.acquire() for _ in range(gate.limit)]

    return asyncio.run(go())


def _window(gate: AdaptiveLimit, seconds: float, status: int | None = None) -> None:
    """A full window: the limit's worth of requests, each answered in ``seconds`` (or with ``status``)."""
    for ticket in _fill(gate):
        gate.release(ticket, None if status else seconds, status)


def test_slow_start_doubles_while_latency_is_flat_then_a_429_halves_it():
    gate = AdaptiveLimit(maximum=100)
    assert gate.limit == START
    for expected in (8, 16, 32, 64):
        _window(gate, 0.2)
        assert gate.limit == expected
    tickets = _fill(gate)
    gate.release(tickets[0], None, 429)
    assert gate.limit == 32 and not gate.slow_start
    for t in tickets[1:]:  # the rest of the overload, sent before the cut: no second cut
        gate.release(t, None, 429)
    assert gate.limit == 32
    _window(gate, 0.2)  # after slow start: one more a window
    assert gate.limit == 33
    _window(gate, None, status=503)
    assert gate.limit == int(33 * BACKOFF)
    assert [p.why for p in gate.trace][-3:] == ["429", "grow", "503"]
    assert gate.congested == 64 + 33


def test_latency_that_rises_with_load_cuts_the_limit_and_flat_latency_keeps_it_growing():
    gate = AdaptiveLimit(maximum=1000)
    _window(gate, 0.2)
    _window(gate, 0.2)
    assert gate.limit == 16
    _window(gate, 0.35)  # 1.75 times the lowest: no more growth, slow start over, no cut either
    assert gate.limit == 16 and not gate.slow_start
    _window(gate, 0.5)  # 2.5 times: requests are queueing
    assert gate.limit == int(16 * BACKOFF)
    _window(gate, 0.21)
    assert gate.limit == int(16 * BACKOFF) + 1


def test_a_limit_the_work_never_fills_does_not_grow_and_the_maximum_holds():
    gate = AdaptiveLimit(maximum=10)

    async def trickle():
        for _ in range(20):  # one request at a time under a limit of 4
            t = await gate.acquire()
            gate.release(t, 0.1)

    asyncio.run(trickle())
    assert gate.limit == START
    for _ in range(5):
        _window(gate, 0.1)
    assert gate.limit == 10


def test_acquire_waits_at_the_limit_and_a_cut_holds_back_until_enough_finished():
    async def go():
        gate = AdaptiveLimit(maximum=8, start=2)
        a, b = await gate.acquire(), await gate.acquire()
        third = asyncio.ensure_future(gate.acquire())
        await asyncio.sleep(0.01)
        assert not third.done()
        gate.release(a, None, 429)  # limit 2 -> 1, one still in flight: still no room
        await asyncio.sleep(0.01)
        assert gate.limit == 1 and not third.done()
        gate.release(b, 0.1)
        await asyncio.wait_for(third, 1)
        assert gate.inflight == 1

    asyncio.run(go())


def _hammer(url: str, calls: int, maximum: int) -> tuple[OpenAIChat, float]:
    async def go():
        chat = OpenAIChat(url, None, concurrency=maximum, adaptive=True, max_wait=0.2)
        sampling = Sampling(max_tokens=8)
        t0 = time.monotonic()

        async def one(i: int):
            await chat.complete([{"role": "user", "content": f"q{i}"}], model="m", sampling=sampling, sample=str(i))

        await asyncio.gather(*(one(i) for i in range(calls)))
        await chat.aclose()
        return chat, time.monotonic() - t0

    return asyncio.run(go())


@pytest.mark.slow
def test_against_a_server_that_answers_429_above_its_capacity_the_limit_settles_at_it():
    script = CapacityScript(capacity=12, latency=0.05)
    with ScriptedServer(script, record=False) as srv:
        chat, _ = _hammer(srv.base_url, 1500, maximum=64)
    gate = chat.gate
    assert gate is not None
    assert 12 * BACKOFF - 1 <= gate.limit <= 13
    assert max(p.limit for p in gate.trace) <= 64
    # the overloads come in the first rounds of slow start; from the second second on, few
    assert script.share_rejected(after=1) < 0.03
    assert any(p.why == "429" for p in gate.trace)


@pytest.mark.slow
def test_against_a_server_that_queues_the_limit_stops_well_short_of_the_maximum():
    script = CapacityScript(capacity=8, latency=0.1, queue=True)
    with ScriptedServer(script, record=False) as srv:
        chat, seconds = _hammer(srv.base_url, 700, maximum=256)
    gate = chat.gate
    assert gate is not None
    # latency (plus FLOOR) twice the lowest is queueing: past ~20 in flight here the limit is cut, not grown
    assert 8 <= gate.limit <= 24
    assert max(p.limit for p in gate.trace) <= 40
    # latency alone stopped the growth (and cut it, when it rose that far): this server sends no 429
    assert not gate.slow_start and {p.why for p in gate.trace} <= {"start", "grow", "latency"}
    assert 700 / seconds >= 0.8 * 8 / 0.1  # and the server is kept busy all the same


@pytest.mark.slow
def test_a_429_with_retry_after_pauses_every_request_that_long():
    script = CapacityScript(capacity=4, latency=0.02, retry_after=0.4)
    with ScriptedServer(script) as srv:
        chat, _ = _hammer(srv.base_url, 60, maximum=16)
        arrivals = list(srv.arrivals)
    assert chat.gate is not None and script.rejected
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert max(gaps) >= 0.35  # after a 429 nothing was sent until its Retry-After had passed
