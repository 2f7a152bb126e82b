"""Issue #9, hardening: a backend that misbehaves in every way we know, against a real local HTTP server.

Each run must complete (transient faults are retried, per-item faults fail or eliminate only their item), or,
when no later call can succeed (a refused key, an unknown model, an endpoint that died), stop early with one
sentence and a resumable run folder. Either way the run folder accounts for every seed: kept, eliminated or a
duplicate with its rule, or failed with the reason.

The other fault areas live next to this file: bad input (test_faults_input.py), the run folder's files and
lock (test_faults_files.py), secrets (test_faults_secrets.py) and fuzzing (test_faults_fuzz.py). The helpers
here (``Model``, ``run_inproc``, ``ledger``) are shared with them.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import struct
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from evol.config import RunConfig
from evol.errors import FatalBackendError
from evol.llm import OpenAIChat
from evol.pipeline import Models
from evol.run import run_pipeline
from evol.rundir import RunDir, read_jsonl
from evol.testing.replies import completion
from evol.testing.server import Reply, ScriptedServer, last_user

from .conftest import run_cli
from .scripted import filler

GIVEN = "#Given Prompt#:\n"
MODELS = Models("scripted-model", "scripted-model", "scripted-model")


# --- a model that plays the method well, with faults planted by test ---------------------------------------


def kind_of(prompt: str) -> str:
    if GIVEN in prompt:
        return "evolve"
    if "First instruction:" in prompt and "Second instruction:" in prompt:
        return "judge"
    return "respond"


def parent_of(prompt: str) -> str:
    return prompt.split(GIVEN, 1)[1].rsplit("\n\n#", 1)[0]


def good_answer(kind: str, prompt: str) -> Reply:
    if kind == "evolve":
        parent = parent_of(prompt)
        return Reply(content=f"{parent} Then {filler('evolve:' + parent, 120)}.")
    if kind == "judge":
        return Reply(content="Not Equal")
    return Reply(content=f"Here is a careful answer. {filler('answer:' + prompt, 200)}")


@dataclass
class Fault:
    kind: str  # evolve, judge or respond
    topic: str | None  # only prompts naming this seed topic; None for every prompt of the kind
    reply: Reply | Callable[[str], Reply]
    times: int | None  # how many calls it hits; None for all of them
    hits: int = 0


class Model:
    """A ScriptedServer script: good answers, except where a planted fault matches (first match wins)."""

    def __init__(self):
        self.faults: list[Fault] = []
        self.lock = threading.Lock()
        self.seen: list[tuple[str, str]] = []  # (kind, prompt) of every chat request

    def fail(self, kind: str, reply, *, topic: str | None = None, times: int | None = None) -> Fault:
        fault = Fault(kind, topic, reply, times)
        self.faults.append(fault)
        return fault

    def __call__(self, request: dict) -> Reply:
        prompt = last_user(request)
        kind = kind_of(prompt)
        with self.lock:
            self.seen.append((kind, prompt))
            for f in self.faults:
                if f.kind == kind and (f.topic is None or f.topic in prompt) and (f.times is None or f.hits < f.times):
                    f.hits += 1
                    return f.reply(prompt) if callable(f.reply) else f.reply
        return good_answer(kind, prompt)

    def prompts(self, kind: str) -> list[str]:
        with self.lock:
            return [p for k, p in self.seen if k == kind]


_stop_lock = threading.Lock()
_stopped: weakref.WeakSet[ScriptedServer] = weakref.WeakSet()


def stop(srv: ScriptedServer) -> None:
    """Stop a server (the endpoint dies); safe to call again, from any thread."""
    with _stop_lock:
        if srv in _stopped:
            return
        _stopped.add(srv)
    srv.__exit__()


def topics(n: int) -> list[str]:
    return [f"Describe topic-{i:02d} in plain words for a curious reader." for i in range(n)]


# --- running the pipeline in-process, with short retry waits ------------------------------------------------


def evol_run(*args: str, env: dict | None = None, engine: str = "local"):
    """``python -m evol run ARGS`` as a user runs it; on the local engine unless told (Prefect takes seconds to start)."""
    return run_cli("run", *args, env=env, engine=engine)


def write_seeds(path: Path, seeds: list) -> Path:
    path.write_text("".join(json.dumps(s if isinstance(s, dict) else {"instruction": s}) + "\n" for s in seeds))
    return path


def run_inproc(base_url: str, seeds: list, out: Path, *, key: str | None = None, max_wait: float = 0.05, **cfg) -> dict:
    """run_pipeline as ``evol run`` calls it, except that retries wait at most ``max_wait`` seconds."""
    seeds_file = write_seeds(out.parent / f"{out.name}-seeds.jsonl", seeds)
    config = RunConfig(
        **{
            "seeds": seeds_file,
            "out": out,
            "base_url": base_url,
            "rounds": 1,
            "concurrency": 2,
            "timeout": 2.0,
            "max_retries": 3,
            **cfg,
        }
    )

    async def go():
        chat = OpenAIChat(
            base_url,
            key,
            timeout=config.timeout,
            max_retries=config.max_retries,
            concurrency=config.concurrency,
            max_wait=max_wait,
        )
        try:
            with RunDir(out) as run_dir:
                return await run_pipeline(config, chat, MODELS, run_dir)
        finally:
            await chat.aclose()

    return asyncio.run(go())


def ledger(out: Path) -> dict[tuple[int, int], tuple[str, str, str]]:
    """(seed index, round) -> (outcome, rule, detail) from the run folder; every attempt appears exactly once."""
    rows: dict[tuple[int, int], tuple[str, str, str]] = {}
    for r in read_jsonl(out / "records.jsonl"):
        if r["round"] == 0:  # a seed's own answer (--include-seeds), not an attempt
            continue
        assert (r["seed_index"], r["round"]) not in rows
        rows[(r["seed_index"], r["round"])] = ("kept", "", "")
    for r in read_jsonl(out / "rejected.jsonl"):
        if r["round"] == 0:  # skipped at load time, or a seed's own answer rejected
            continue
        assert (r["seed_index"], r["round"]) not in rows
        assert r["rule"] and r["detail"], r  # a rejection always says which rule and why
        rows[(r["seed_index"], r["round"])] = (r["kind"], r["rule"], r["detail"])
    return rows


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def assert_accounted(out: Path, n_seeds: int, rounds: int = 1) -> dict:
    """The manifest and the files agree, and every seed has an outcome in every round."""
    m = manifest(out)
    rows = ledger(out)
    assert set(rows) == {(i, r) for i in range(n_seeds) for r in range(1, rounds + 1)}
    c = m["counts"]
    assert c["balanced"] and c["seeds"] == n_seeds and c["rounds_done"] == rounds
    outcomes = [v[0] for v in rows.values()]
    for kind in ("kept", "eliminated", "duplicate", "failed"):
        assert c[kind] == outcomes.count(kind), kind
    return rows


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
        "dataset_rows": 4,
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


# --- answers that arrive but are no good: eliminated under a named rule, never retried ----------------------

BAD_ANSWERS = [
    ("evolve", Reply(content=""), "empty_evolution"),
    ("evolve", Reply(content=None), "empty_evolution"),
    ("evolve", Reply(content=" \n\t "), "empty_evolution"),
    (
        "evolve",
        Reply(content="Describe topic-01 in plain words and also", finish_reason="length"),
        "truncated_evolution",
    ),
    ("evolve", Reply(content="Describe topic-01 in", finish_reason="content_filter"), "content_filtered"),
    ("evolve", Reply(content=None, finish_reason="content_filter"), "content_filtered"),
    ("respond", Reply(content=""), "empty_response"),
    ("respond", Reply(content="   \n  "), "empty_response"),
    ("respond", Reply(content="Topic-01 is, in plain words, a", finish_reason="length"), "truncated_response"),
    ("respond", Reply(content=None, finish_reason="content_filter"), "content_filtered"),
    ("respond", Reply(content="Sorry, I can't help with that."), "sorry_short_response"),
    ("respond", Reply(content="It is what it is."), "stopwords_only_response"),
    ("judge", Reply(content="Equal"), "no_information_gain"),
]


@pytest.mark.parametrize("stage, reply, rule", BAD_ANSWERS, ids=[f"{s}-{r}" for s, _, r in BAD_ANSWERS])
@pytest.mark.slow
def test_a_bad_answer_eliminates_its_item_under_a_named_rule(tmp_path, stage, reply, rule):
    model = Model()
    model.fail(stage, reply, topic="topic-01")
    with ScriptedServer(model) as srv:
        m = run_inproc(srv.base_url, topics(3), tmp_path / "o")
    assert m["status"] == "complete"
    rows = assert_accounted(tmp_path / "o", 3)
    assert rows[(1, 1)][:2] == ("eliminated", rule)
    assert rows[(0, 1)][0] == rows[(2, 1)][0] == "kept"
    assert m["by_rule"] == {rule: 1}
    assert sum(1 for p in model.prompts(stage) if "topic-01" in p) == 1  # an answer is not retried
    if stage == "evolve":  # an eliminated evolution is never answered
        assert not any("topic-01" in p for p in model.prompts("respond"))


@pytest.mark.parametrize("rule", ["content_filtered", "echoed_response", "script_changed"])
@pytest.mark.slow
def test_the_new_rules_can_be_switched_off(tmp_path, rule):
    reply = {
        "content_filtered": (
            "respond",
            Reply(content="A fine answer about topic-01 and more.", finish_reason="content_filter"),
        ),
        "echoed_response": ("respond", lambda p: Reply(content=p)),
        "script_changed": ("evolve", Reply(content=CHINESE_EVOLUTION)),
    }[rule]
    model = Model()
    model.fail(reply[0], reply[1], topic="topic-01")
    with ScriptedServer(model) as srv:
        run_inproc(srv.base_url, topics(2), tmp_path / "on")
        run_inproc(srv.base_url, topics(2), tmp_path / "off", disable_rules=[rule])
    assert ledger(tmp_path / "on")[(1, 1)][:2] == ("eliminated", rule)
    assert ledger(tmp_path / "off")[(1, 1)][0] == "kept"


@pytest.mark.slow
def test_an_evolution_over_the_length_budget_is_eliminated_and_never_answered(tmp_path):
    model = Model()
    model.fail("evolve", Reply(content="Describe topic-01 " + filler("long", 3000)), topic="topic-01")
    with ScriptedServer(model) as srv:
        run_inproc(srv.base_url, topics(2), tmp_path / "o", max_instruction_chars=1000)
        assert not any("topic-01" in p for p in model.prompts("respond") + model.prompts("judge"))
        run_inproc(srv.base_url, topics(2), tmp_path / "off", max_instruction_chars=1000, disable_rules=["too_long"])
    assert ledger(tmp_path / "o")[(1, 1)][:2] == ("eliminated", "too_long")
    assert ledger(tmp_path / "off")[(1, 1)][0] == "kept"  # like every rule, it can be switched off


# --- echoes and the wrong language ---------------------------------------------------------------------------

CHINESE_EVOLUTION = "请用通俗的语言详细描述这个主题，并给出三个具体的例子，说明它在日常生活中的作用和意义。"


def test_an_evolving_model_that_echoes_its_prompt_is_caught_by_the_leak_rule(tmp_path):
    model = Model()
    model.fail("evolve", lambda prompt: Reply(content=prompt), topic="topic-01")  # the whole evolving prompt back
    model.fail("evolve", lambda prompt: Reply(content=parent_of(prompt)), topic="topic-02")  # its parent back
    model.fail(
        "evolve", lambda prompt: Reply(content="#Rewritten Prompt#:\n" + parent_of(prompt).upper()), topic="topic-03"
    )
    with ScriptedServer(model) as srv:
        run_inproc(srv.base_url, topics(4), tmp_path / "o")
    rows = assert_accounted(tmp_path / "o", 4)
    assert rows[(1, 1)][:2] == ("eliminated", "prompt_leak")
    assert rows[(2, 1)][:2] == ("eliminated", "identical_to_parent")
    assert rows[(3, 1)][:2] == ("eliminated", "identical_to_parent")
    assert rows[(0, 1)][0] == "kept"


def test_a_responding_model_that_echoes_the_instruction_is_eliminated(tmp_path):
    model = Model()
    model.fail("respond", lambda prompt: Reply(content=prompt), topic="topic-01")
    with ScriptedServer(model) as srv:
        run_inproc(srv.base_url, topics(2), tmp_path / "o", include_seeds=True)
    rows = assert_accounted(tmp_path / "o", 2)
    assert rows[(1, 1)][:2] == ("eliminated", "echoed_response")
    # a seed answered by echoing it is eliminated the same way (round 0 of --include-seeds)
    seed_rows = [r for r in read_jsonl(tmp_path / "o" / "rejected.jsonl") if r["round"] == 0]
    assert [(r["seed_index"], r["rule"]) for r in seed_rows] == [(1, "echoed_response")]


@pytest.mark.slow
def test_a_judge_that_echoes_its_prompt_is_unclear_retried_and_eliminated_unless_kept(tmp_path):
    """An echoed judge prompt is no verdict, though it holds the words "Equal" and "Not Equal": asked again, then
    eliminated as judge_unclear; with keep_judge_unclear the item is kept."""
    model = Model()
    model.fail("judge", lambda prompt: Reply(content=prompt), topic="topic-01")
    with ScriptedServer(model) as srv:
        run_inproc(srv.base_url, topics(2), tmp_path / "o")
        run_inproc(srv.base_url, topics(2), tmp_path / "kept", keep_judge_unclear=True)
    rows = ledger(tmp_path / "o")
    assert rows[(1, 1)][:2] == ("eliminated", "judge_unclear") and rows[(0, 1)][0] == "kept"
    judge = next(r["judge"] for r in read_jsonl(tmp_path / "o" / "rejected.jsonl") if r["seed_index"] == 1)
    assert [a["judgement"] for a in judge["answers"]] == ["unclear", "unclear"]
    assert "Second instruction:" in judge["answers"][0]["text"]
    assert ledger(tmp_path / "kept")[(1, 1)][0] == "kept"


def test_an_evolution_in_another_language_is_eliminated_but_an_answer_in_one_is_kept(tmp_path):
    """Rewriting is not translating: an English seed evolved into Chinese is dropped (script_changed). An answer
    in another script is kept as it came (a translation task asks for one); records.jsonl holds it as given."""
    model = Model()
    model.fail("evolve", Reply(content=CHINESE_EVOLUTION), topic="topic-01")
    model.fail("respond", Reply(content="这个主题很有意思。" + CHINESE_EVOLUTION), topic="topic-02")
    with ScriptedServer(model) as srv:
        run_inproc(srv.base_url, topics(3), tmp_path / "o")
    rows = assert_accounted(tmp_path / "o", 3)
    outcome, rule, detail = rows[(1, 1)]
    assert (outcome, rule) == ("eliminated", "script_changed") and "CJK" in detail and "LATIN" in detail
    assert rows[(2, 1)][0] == "kept"
    kept = {r["seed_index"]: r for r in read_jsonl(tmp_path / "o" / "records.jsonl")}
    assert kept[2]["output"].startswith("这个主题很有意思")


@pytest.mark.parametrize(
    "parent, evolution, changed",
    [
        ("Write a short poem about the rain falling on the city.", CHINESE_EVOLUTION, ("LATIN", "CJK")),
        (
            "Write a short poem about the rain falling on the city.",
            "Напишите короткое стихотворение о дожде в городе.",
            ("LATIN", "CYRILLIC"),
        ),
        (
            CHINESE_EVOLUTION,
            "Write a short poem about the rain falling on the city, then explain it.",
            ("CJK", "LATIN"),
        ),
        # what must never be dropped: a translation task, code around a Chinese sentence, other Latin languages,
        # a parent that already mixes scripts, and texts too short to tell
        (
            "Write a short poem about the rain falling on the city.",
            "Translate into Japanese, as a haiku: the rain falls on the city, 雨の街",
            None,
        ),
        (
            "写一个Python函数计算斐波那契数列的第n项",
            "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n"
            "    return a\n# 写一个函数，要求使用迭代，并给出时间复杂度分析",
            None,
        ),
        (
            "Write a short poem about the rain falling on the city.",
            "Écrivez un court poème sur la pluie qui tombe sur la ville.",
            None,
        ),
        ("Translate 'good morning' into Chinese: 早上好 and 晚上好 and 你好吗", CHINESE_EVOLUTION, None),
        ("Say hi.", "你好", None),
    ],
)
def test_script_change_is_narrow(parent, evolution, changed):
    from evol.filters import script_change

    assert script_change(parent, evolution) == changed


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
