"""Permanent errors (a refused key, an unknown model) and an endpoint that dies mid-run: one sentence, the run
stops early instead of failing every item, and the same command resumes (faultmodel.py's scripted model)."""

from __future__ import annotations

import threading
import time

import pytest
from aiohttp import web

from evol.errors import FatalBackendError
from evol.testing.server import Reply, ScriptedServer, last_user

from ..faultmodel import (
    Model,
    assert_accounted,
    evol_run,
    good_answer,
    kind_of,
    manifest,
    run_inproc,
    stop,
    topics,
    write_seeds,
)

# --- permanent errors: one sentence, and the run stops instead of failing every item ------------------------


@pytest.mark.parametrize("status, words", [(401, "API key"), (403, "denied"), (404, "--model")])
def test_a_permanent_error_mid_run_stops_early_and_keeps_what_was_done(tmp_path, status, words):
    model = Model()
    model.fail("respond", Reply(status=status, content="no such thing"), topic="topic-03")
    with ScriptedServer(model) as srv, pytest.raises(FatalBackendError) as e:
        run_inproc(srv.base_url, topics(30), tmp_path / "o", concurrency=1, rounds=2, max_retries=3)
    message = str(e.value)
    assert f"HTTP {status}" in message and words in message and "\n" not in message
    m = manifest(tmp_path / "o")
    assert m["status"] == "stopped" and m["reason"] == message
    # items under way when it happened finish; nothing new starts: far fewer calls than 30 seeds x 3 stages
    assert len(model.seen) < 20
    assert sum(1 for k, p in model.seen if k == "respond" and "topic-03" in p) == 1  # never retried


@pytest.mark.slow
def test_an_unknown_model_through_the_command_line_is_one_sentence(tmp_path):
    def script(request):
        if request["model"] != "scripted-model":
            return Reply(status=404, content=f"The model `{request['model']}` does not exist.")
        return good_answer(kind_of(last_user(request)), last_user(request))

    seeds = write_seeds(tmp_path / "seeds.jsonl", topics(20))
    with ScriptedServer(script) as srv:
        proc = evol_run(
            "--seeds",
            str(seeds),
            "--base-url",
            srv.base_url,
            "--out",
            str(tmp_path / "o"),
            "--model",
            "gpt-nope",
            "--concurrency",
            "1",
        )
        calls = srv.chat_count()
    assert proc.returncode == 4 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("evol: error: ") and "404" in last and "gpt-nope" in last and "--model" in last
    assert calls <= 2  # one per worker in flight (concurrency 1 -> 2 workers), not one per seed
    assert manifest(tmp_path / "o")["status"] == "stopped"


# --- the endpoint dies mid-run: the circuit breaker stops the run, which then resumes ------------------------


@pytest.mark.slow
def test_an_endpoint_that_dies_mid_run_stops_the_run_with_one_sentence_and_it_resumes(tmp_path):
    model = Model()
    state: dict = {"n": 0}
    died = threading.Event()

    def script(request):
        state["n"] += 1
        if state["n"] == 8:  # the server process goes away while the run is under way
            threading.Thread(target=lambda: (stop(state["srv"]), died.set())).start()
        return model(request)

    state["srv"] = ScriptedServer(script).__enter__()
    t0 = time.monotonic()
    try:
        with pytest.raises(FatalBackendError) as e:
            run_inproc(state["srv"].base_url, topics(40), tmp_path / "o", concurrency=2, max_retries=3)
    finally:
        died.wait(10)
        stop(state["srv"])
    took = time.monotonic() - t0
    message = str(e.value)
    assert "stopped answering" in message and "connection failed" in message and "run the same command again" in message
    assert "\n" not in message
    m = manifest(tmp_path / "o")
    assert m["status"] == "stopped" and m["reason"] == message and m["counts"]["rounds_done"] == 0
    # stopped, not ground through: 40 items x 4 attempts would be 160 failed calls and a 'complete' run
    # each of the 4 workers fails at most the item it had under way and one more before the breaker opens
    assert m["usage"]["calls_failed"] and sum(m["usage"]["calls_failed"].values()) <= 8
    assert took < 15
    answered = len(model.seen)

    # the same command once the endpoint is back: the answers it got are not asked for again
    with ScriptedServer(model) as srv:
        m2 = run_inproc(srv.base_url, topics(40), tmp_path / "o", concurrency=2, max_retries=3)
    assert m2["status"] == "complete" and m2["cache"]["hits"] >= 6
    assert len(model.seen) - answered == m2["cache"]["misses"]
    rows = assert_accounted(tmp_path / "o", 40)
    assert all(v[0] == "kept" for v in rows.values())


@pytest.mark.slow
def test_an_endpoint_that_dies_stops_the_command_line_run(tmp_path):
    model = Model()
    state: dict = {"n": 0}

    def script(request):
        state["n"] += 1
        if state["n"] == 5:
            threading.Thread(target=stop, args=(state["srv"],)).start()
        return model(request)

    seeds = write_seeds(tmp_path / "seeds.jsonl", topics(30))
    state["srv"] = ScriptedServer(script).__enter__()
    try:
        proc = evol_run(
            "--seeds",
            str(seeds),
            "--base-url",
            state["srv"].base_url,
            "--out",
            str(tmp_path / "o"),
            "--rounds",
            "1",
            "--concurrency",
            "2",
            "--max-retries",
            "1",
            "--timeout",
            "5",
        )
    finally:
        stop(state["srv"])
    assert proc.returncode == 4 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("evol: error: The endpoint at ") and "stopped answering" in last
    assert manifest(tmp_path / "o")["status"] == "stopped"


def test_a_broken_endpoint_that_still_accepts_connections_also_trips_the_breaker(tmp_path):
    """Every chat call and the model list answer 502 (a gateway whose model server is gone): stop, don't grind."""
    state = {"broken": False, "n": 0}
    model = Model()

    class Gateway(ScriptedServer):
        async def _models(self, request):
            if state["broken"]:
                return web.json_response({"error": {"message": "bad gateway"}}, status=502)
            return await super()._models(request)

    def script(request):
        state["n"] += 1
        if state["n"] >= 6:
            state["broken"] = True
        return Reply(status=502, content="bad gateway") if state["broken"] else model(request)

    with Gateway(script) as srv, pytest.raises(FatalBackendError, match=r"stopped answering.*HTTP 502"):
        run_inproc(srv.base_url, topics(40), tmp_path / "o", concurrency=2, max_retries=2)
    assert state["n"] < 40  # grinding on would be 40 items x 3 attempts
    assert manifest(tmp_path / "o")["status"] == "stopped"
