"""The OpenAI-compatible client against a real local HTTP server: answers, retries and error mapping."""

import asyncio
import time

import pytest

from evol.config import Sampling
from evol.errors import FatalBackendError, RequestRejectedError, TransientBackendError
from evol.llm.client import OpenAIChat, Redactor, call_seed
from evol.llm.endpoint import endpoint_identity
from evol.testing.server import Reply, ScriptedServer

S = Sampling()


def ask(srv, *, key=None, retries=3, timeout=5.0, prompt="hi"):
    async def go():
        chat = OpenAIChat(srv.base_url, key, max_retries=retries, timeout=timeout, max_wait=0.5)
        try:
            return await chat.complete([{"role": "user", "content": prompt}], model="m", sampling=S, sample="x")
        finally:
            await chat.aclose()

    return asyncio.run(go())


def test_a_completion_with_usage_and_finish_reason(server):
    server.script = lambda req: Reply(content="hello there", finish_reason="length")
    c = ask(server)
    assert (c.text, c.finish_reason, c.usage.completion_tokens) == ("hello there", "length", 2)
    body = server.requests[0]
    assert body["temperature"] == 1.0 and body["top_p"] == 0.95 and body["max_tokens"] == 2048
    assert "seed" not in body  # not every OpenAI-compatible endpoint takes one


def test_seeded_calls_carry_a_seed_that_is_a_function_of_the_call(server):
    server.script = lambda req: Reply(content="ok")

    async def go():
        chat = OpenAIChat(server.base_url, None, max_retries=0, seed_calls=True)
        try:
            for sample in ("a.r1:evolve", "a.r1:respond", "a.r1:evolve"):
                await chat.complete([{"role": "user", "content": "hi"}], model="m", sampling=S, sample=sample)
        finally:
            await chat.aclose()

    asyncio.run(go())
    seeds = [body["seed"] for body in server.requests]
    assert seeds[0] == seeds[2] == call_seed("a.r1:evolve") != seeds[1]
    assert all(0 <= s < 2**31 for s in seeds)  # llama.cpp reads -1 and 0xFFFFFFFF as "pick one at random"


def flaky(*failures: Reply):
    queue = list(failures)
    return lambda req: queue.pop(0) if queue else Reply(content="finally")


@pytest.mark.parametrize(
    "failure",
    [
        Reply(status=429, headers={"retry-after": "0.2"}),
        Reply(status=429),
        Reply(status=500),
        Reply(status=502),
        Reply(status=503),
        Reply(body="{not json", status=200),
        Reply(choices=False),
        Reply(drop=True),
    ],
)
@pytest.mark.slow
def test_transient_failures_are_retried(server, failure):
    server.script = flaky(failure, failure)
    assert ask(server).text == "finally"
    assert server.chat_count() == 3


@pytest.mark.slow
def test_retry_after_is_honoured(server):
    server.script = flaky(Reply(status=429, headers={"retry-after": "1.5"}))
    t0 = time.monotonic()
    ask(server)
    assert time.monotonic() - t0 >= 1.4  # a lower bound only: the client must wait at least what it was told


@pytest.mark.slow
def test_retries_run_out_into_a_transient_error(server):
    server.script = lambda req: Reply(status=503)
    with pytest.raises(TransientBackendError, match="HTTP 503"):
        ask(server, retries=2)
    assert server.chat_count() == 3


@pytest.mark.slow
def test_a_slow_server_times_out_and_is_retried(server):
    server.script = flaky(Reply(delay=2.0, content="late"))
    assert ask(server, timeout=0.5).text == "finally"


@pytest.mark.parametrize(
    "status, error",
    [(400, RequestRejectedError), (422, RequestRejectedError), (404, FatalBackendError), (403, FatalBackendError)],
)
def test_permanent_errors_are_not_retried(server, status, error):
    server.script = lambda req: Reply(status=status, content="nope")
    with pytest.raises(error):
        ask(server)
    assert server.chat_count() == 1


def test_a_wrong_key_is_fatal_and_never_echoed():
    key = "sk-evoltest-ABCDEFGH12345678"
    with ScriptedServer(require_key="sk-right") as srv, pytest.raises(FatalBackendError) as e:
        ask(srv, key=key)
    assert e.value.status == 401 and key not in str(e.value) and "ABCDEFGH" not in str(e.value)
    assert srv.auth_headers[-1] == f"Bearer {key}"  # it was sent, just never shown


def test_connection_refused_is_reported_as_such_and_a_gone_endpoint_is_fatal():
    with ScriptedServer() as srv:
        url = srv.base_url

    class Gone:
        base_url = url

    # each attempt is a transient "connection failed"; once the retries run out and the endpoint's model list
    # cannot be reached either, the circuit breaker makes it fatal (tests/faults/test_faults.py has the whole run)
    with pytest.raises(FatalBackendError, match="stopped answering \\(connection failed"):
        ask(Gone, retries=0)


def test_redactor_and_identity():
    r = Redactor("sk-my-secret-key")
    assert r("bad key sk-my-secret-key here") == "bad key *** here"
    assert "abcdef123" not in r("Incorrect API key provided: sk-abcdef123456")
    assert endpoint_identity("http://127.0.0.1:5555/v1") == endpoint_identity("http://localhost:7777/v1/")
    assert endpoint_identity("https://api.example.com/v1") == "https://api.example.com/v1"


def test_a_loopback_endpoint_is_reached_directly_whatever_the_proxy_settings(server, monkeypatch):
    """A proxy from the environment cannot reach this machine's loopback (the embedded model, a local vLLM)."""
    dead = "http://127.0.0.1:9"  # nothing listens there: a request through the proxy fails
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, dead)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert ask(server, retries=0).text.startswith("Echo: hi")

    from evol.llm.endpoint import sdk_client

    remote = sdk_client("https://api.example.invalid/v1", None, timeout=1)
    assert remote._client._trust_env  # anything else still honours the user's proxy
    asyncio.run(remote.close())


@pytest.mark.parametrize("rpm", [None, 6000])
@pytest.mark.slow
def test_concurrency_caps_the_requests_the_server_holds_at_once(server, rpm):
    # with room in the SDK for a few calls beyond --concurrency (none under rate limits), the server must
    # still never hold more than --concurrency unanswered requests, and a busy run keeps it at that
    held = {"now": 0, "max": 0}

    async def slow(req):
        held["now"] += 1
        held["max"] = max(held["max"], held["now"])
        await asyncio.sleep(0.05)
        held["now"] -= 1
        return Reply(content="ok")

    server.script = slow

    async def go():
        chat = OpenAIChat(server.base_url, None, concurrency=4, rpm=rpm)
        try:
            await asyncio.gather(
                *(
                    chat.complete([{"role": "user", "content": f"q{i}"}], model="m", sampling=S, sample=str(i))
                    for i in range(40)
                )
            )
        finally:
            await chat.aclose()

    asyncio.run(go())
    assert server.chat_count() == 40
    assert held["max"] == 4
