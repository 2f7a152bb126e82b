"""Issue #9, hardening: a backend that misbehaves in every way we know, against a real local HTTP server.

Each run must complete (transient faults are retried, per-item faults fail or eliminate only their item), or,
when no later call can succeed (a refused key, an unknown model, an endpoint that died), stop early with one
sentence and a resumable run folder. Either way the run folder accounts for every seed: kept, eliminated or a
duplicate with its rule, or failed with the reason.

This file: transient faults, retried, and faults that never recover for one item. The other fault areas live
next to it: answers that arrive but are no good (test_faults_answers.py), permanent errors and an endpoint that
dies (test_faults_endpoint.py), bad input (test_faults_input.py), the run folder's files and lock
(test_faults_files.py), secrets (test_faults_secrets.py) and fuzzing (test_faults_fuzz.py). Their shared model
and helpers (``Model``, ``run_inproc``, ``ledger``) are in faultmodel.py.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import struct
import threading
import time
from collections.abc import Callable

import pytest
from aiohttp import web

from evol.llm.client import OpenAIChat
from evol.rundir.files import read_jsonl
from evol.testing.replies import completion
from evol.testing.server import Reply, ScriptedServer, last_user

from ..faultmodel import (
    GIVEN,
    Model,
    assert_accounted,
    evol_run,
    run_inproc,
    stop,
    topics,
    write_seeds,
)

# --- transient faults: retried, and the run completes as if nothing happened --------------------------------


class ResetServer(ScriptedServer):
    """The scripted server, except that chat requests the test picks get half a response and then a TCP reset."""

    def __init__(self, script, reset_when: Callable[[str], bool]):
        super().__init__(script)
        self.reset_when = reset_when
        self.resets = 0

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        with self._lock:
            reset = self.reset_when(last_user(body))
            self.resets += reset
        if not reset:
            return await super()._chat(request)
        whole = json.dumps(completion(body, Reply(content="this answer never arrives whole"))).encode()
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        resp.content_length = len(whole)
        await resp.prepare(request)
        await resp.write(whole[: len(whole) // 2])  # headers and half the body are on the wire
        await asyncio.sleep(0.05)
        transport = request.transport
        assert transport is not None  # the handler runs while the connection is open
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST, not FIN
        transport.abort()
        return resp


TRANSIENT = {
    "429 with retry-after": Reply(status=429, content="slow down", headers={"retry-after": "0.05"}),
    "429 without retry-after": Reply(status=429, content="slow down"),
    "500": Reply(status=500, content="internal error"),
    "502": Reply(status=502, content="bad gateway"),
    "503": Reply(status=503, content="overloaded"),
    "malformed JSON": Reply(body='{"id": "x", "choices": [{"message": '),
    "not JSON at all": Reply(body="<html>502 Bad Gateway</html>"),
    "empty choices": Reply(choices=False),
    "connection dropped": Reply(drop=True),
    "slower than the timeout": Reply(delay=1.5, content="too late"),
}


@pytest.mark.parametrize("fault", list(TRANSIENT))
@pytest.mark.slow
def test_a_transient_fault_is_retried_and_the_run_completes(tmp_path, fault):
    model = Model()
    # the first two calls of one seed's evolution and the first of another seed's answer meet the fault
    model.fail("evolve", TRANSIENT[fault], topic="topic-01", times=2)
    model.fail("respond", TRANSIENT[fault], topic="topic-02", times=1)
    with ScriptedServer(model) as srv:
        m = run_inproc(srv.base_url, topics(4), tmp_path / "o", timeout=0.5)
    assert m["status"] == "complete"
    rows = assert_accounted(tmp_path / "o", 4)
    assert all(v[0] == "kept" for v in rows.values()), rows
    assert m["usage"]["calls_failed"] == {}
    # each fault really happened, and was paid for with a retry rather than a lost item
    assert [f.hits for f in model.faults] == [2, 1]
    assert len(model.prompts("evolve")) == 4 + 2 and len(model.prompts("respond")) == 4 + 1


@pytest.mark.slow
def test_a_connection_reset_mid_response_is_retried(tmp_path):
    model = Model()
    state = {"left": 2}

    def reset_when(prompt):  # the first two answers to topic-01's evolution are cut off mid-body
        if GIVEN in prompt and "topic-01" in prompt and state["left"] > 0:
            state["left"] -= 1
            return True
        return False

    with ResetServer(model, reset_when) as srv:
        m = run_inproc(srv.base_url, topics(3), tmp_path / "o")
    assert srv.resets == 2 and m["status"] == "complete"
    rows = assert_accounted(tmp_path / "o", 3)
    assert all(v[0] == "kept" for v in rows.values())


@pytest.mark.slow
def test_a_refused_connection_is_retried_until_the_server_is_back(tmp_path):
    """The server goes away for a moment (a restart) and comes back on the same port: nothing is lost."""
    model = Model()
    restarted = threading.Event()
    state: dict = {"n": 0}

    def restart():
        stop(state["first"])
        time.sleep(0.3)  # refused connections meanwhile
        state["second"] = ScriptedServer(model, port=state["first"].port).__enter__()
        restarted.set()

    def script(request):
        state["n"] += 1
        if state["n"] == 3:
            threading.Thread(target=restart).start()
        return model(request)

    state["first"] = ScriptedServer(script).__enter__()
    try:
        m = run_inproc(state["first"].base_url, topics(4), tmp_path / "o", max_retries=20, max_wait=0.1)
    finally:
        restarted.wait(10)
        stop(state["first"])
        if "second" in state:
            stop(state["second"])
    assert restarted.is_set() and m["status"] == "complete"
    rows = assert_accounted(tmp_path / "o", 4)
    assert all(v[0] == "kept" for v in rows.values())


@pytest.mark.parametrize("hint", [{"retry-after": "0.05"}, {"retry-after-ms": "50"}])
def test_retry_after_is_waited_as_given_not_stretched_to_the_backoff(hint):
    """With the default backoff (1 s, 2 s, 4 s ...), three retries would take 7 s or more; the server said 50 ms."""
    from evol.config import Sampling

    replies = [
        Reply(status=429, content="slow down", headers=hint),
        Reply(status=503, content="busy", headers=hint),
        Reply(status=429, content="slow down", headers=hint),
    ]
    with ScriptedServer(lambda request: replies.pop(0) if replies else Reply(content="finally")) as srv:

        async def go():
            chat = OpenAIChat(srv.base_url, None, max_retries=3, timeout=5)  # the default max_wait of 60 s
            try:
                return await chat.complete(
                    [{"role": "user", "content": "hi"}], model="m", sampling=Sampling(), sample="x"
                )
            finally:
                await chat.aclose()

        t0 = time.monotonic()
        assert asyncio.run(go()).text == "finally"
        took = time.monotonic() - t0
        arrivals = list(srv.arrivals)
    assert took < 2.5
    assert all(b - a >= 0.045 for a, b in itertools.pairwise(arrivals))  # but never sooner than it said


@pytest.mark.slow
def test_transient_faults_through_the_command_line(tmp_path):
    """The user's command: server-timed retries (Retry-After in seconds and in ms) keep it fast, exit 0."""
    model = Model()
    model.fail(
        "evolve", Reply(status=429, content="slow down", headers={"retry-after": "0.05"}), topic="topic-00", times=2
    )
    model.fail("evolve", Reply(status=503, content="busy", headers={"retry-after-ms": "20"}), topic="topic-01", times=2)
    model.fail("judge", Reply(status=500, content="oops", headers={"retry-after-ms": "20"}), topic="topic-02", times=1)
    model.fail("evolve", Reply(status=400, content="this request is not allowed"), topic="topic-03")  # for good
    seeds = write_seeds(tmp_path / "seeds.jsonl", topics(5))
    with ScriptedServer(model) as srv:
        t0 = time.monotonic()
        proc = evol_run(
            "--seeds",
            str(seeds),
            "--base-url",
            srv.base_url,
            "--out",
            str(tmp_path / "o"),
            "--rounds",
            "1",
            "--concurrency",
            "2",
            "--max-retries",
            "3",
            "--timeout",
            "5",
        )
        took = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert took < 20  # Retry-After was honoured as given, not stretched to the exponential backoff's seconds
    rows = assert_accounted(tmp_path / "o", 5)
    assert [f.hits for f in model.faults[:3]] == [2, 2, 1]
    assert rows[(3, 1)][:2] == ("failed", "backend_error") and "HTTP 400" in rows[(3, 1)][2]
    assert all(rows[(i, 1)][0] == "kept" for i in (0, 1, 2, 4))
    assert json.loads(proc.stdout) == {
        "out": str(tmp_path / "o"),
        "dataset_rows": 9,  # the 5 seeds with their answers (the default, as WizardLM's dataset) and the 4 kept
        "kept": 4,
        "eliminated": 0,
        "duplicate": 0,
        "failed": 1,
    }


# --- a fault that never recovers for one item: that item fails with its reason, the rest complete ----------

PERSISTENT = {
    "500": (Reply(status=500, content="internal error"), "HTTP 500"),
    "malformed JSON": (Reply(body="{not json"), "malformed"),
    "empty choices": (Reply(choices=False), "no choices"),
    "timeout": (Reply(delay=1.0, content="late"), "timed out"),
    "dropped connection": (Reply(drop=True), "connection failed"),
    "400": (Reply(status=400, content="invalid request: bad parameter"), "HTTP 400"),
    "422": (Reply(status=422, content="unprocessable"), "HTTP 422"),
}


@pytest.mark.parametrize("fault", list(PERSISTENT))
@pytest.mark.parametrize("stage", ["evolve", "respond"])
@pytest.mark.slow
def test_a_persistent_fault_fails_only_its_item(tmp_path, fault, stage):
    reply, reason = PERSISTENT[fault]
    model = Model()
    model.fail(stage, reply, topic="topic-01")
    with ScriptedServer(model) as srv:
        m = run_inproc(srv.base_url, topics(4), tmp_path / "o", timeout=0.4, max_retries=2)
    assert m["status"] == "complete"  # the circuit breaker saw a healthy endpoint and let the run go on
    rows = assert_accounted(tmp_path / "o", 4)
    outcome, rule, detail = rows[(1, 1)]
    assert (outcome, rule) == ("failed", "backend_error") and reason in detail
    assert all(rows[(i, 1)][0] == "kept" for i in (0, 2, 3))
    failed = [r for r in read_jsonl(tmp_path / "o" / "rejected.jsonl") if r["kind"] == "failed"]
    assert failed[0]["stage"] == stage
    assert m["usage"]["calls_failed"] == {stage: 1}
    retried = 1 if fault.startswith("4") else 3  # a 4xx is this request's own problem: not retried
    assert sum(1 for p in model.prompts(stage) if "topic-01" in p) == retried
