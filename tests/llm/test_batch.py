"""``--batch``: the same run through the OpenAI Batch API (files up, batches polled, files down) of the scripted server.

The scripted server runs every line of a batch file through the same script as a chat request, and keeps
``batch_sent``: the custom id (the call key) of each line of each batch created. A request sent twice is a
custom id that appears twice there.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections import Counter

import pytest

from evol.config import Sampling
from evol.errors import RequestRejectedError, TransientBackendError
from evol.llm.batch.chat import BatchingChat
from evol.llm.cache import CallCache
from evol.seeds import load_seeds
from evol.testing.server import Reply, ScriptedServer, last_user

from ..conftest import ROOT, SEEDS, run_cli
from ..scripted import EvolScript, planted

pytestmark = pytest.mark.slow  # runs through the Batch API, most in a subprocess (2-24 s each)

ROUNDS = 3


def stateless(req: dict) -> Reply:
    """Answers that depend only on the request, so a killed and resumed run meets the same ones."""
    prompt = last_user(req)
    if "First instruction:" in prompt:
        return Reply(content="Not Equal")
    tag = hashlib.sha256(prompt.encode()).hexdigest()[:12]
    return Reply(content=f"Reply {tag}: " + " ".join(f"w{tag}{i}" for i in range(30)))


def poll_config(tmp_path, seconds: float = 0.05):
    path = tmp_path / "batch.json"
    path.write_text(json.dumps({"batch_poll_seconds": seconds}))
    return str(path)


def args(srv: ScriptedServer, out, *extra: str, limit: int = 20) -> tuple[str, ...]:
    return (
        "run",
        "--seeds",
        str(SEEDS),
        "--limit",
        str(limit),
        "--rounds",
        str(ROUNDS),
        "--seed",
        "7",
        "--concurrency",
        "4",
        "--base-url",
        srv.base_url,
        "--out",
        str(out),
        *extra,
    )


def manifest(out) -> dict:
    return json.loads((out / "manifest.json").read_text())


def sent_twice(srv: ScriptedServer) -> list[str]:
    return [cid for cid, n in Counter(cid for _, cid in srv.batch_sent).items() if n > 1]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The stateless script's run without --batch: the dataset every batch run below must reproduce."""
    out = tmp_path_factory.mktemp("direct") / "run"
    with ScriptedServer(stateless) as srv:
        proc = run_cli(*args(srv, out))
        calls = srv.chat_count()
    assert proc.returncode == 0, proc.stderr
    return (out / "dataset.json").read_bytes(), calls


def test_batch_run_gives_the_direct_runs_dataset_at_half_the_cost(tmp_path):
    seeds = [s.instruction for s in load_seeds(SEEDS, limit=24).seeds]
    outs = {}
    for mode, extra in (("direct", ()), ("batch", ("--batch", "--config", poll_config(tmp_path, 0.2)))):
        with ScriptedServer(EvolScript(seeds), models=("gpt-4o-mini",)) as srv:
            proc = run_cli(*args(srv, tmp_path / mode, *extra, limit=24))
            assert proc.returncode == 0, proc.stderr
            outs[mode] = srv, dict(srv.calls)
    direct, batch = manifest(tmp_path / "direct"), manifest(tmp_path / "batch")
    for name in ("dataset.json", "records.jsonl", "rejected.jsonl"):
        assert (tmp_path / "batch" / name).read_bytes() == (tmp_path / "direct" / name).read_bytes(), name
    assert batch["counts"] == direct["counts"] and batch["usage"] == direct["usage"]
    assert direct["cost_usd"]["total"] > 0
    assert batch["cost_usd"]["total"] == pytest.approx(direct["cost_usd"]["total"] / 2, abs=2e-6)
    # a request planted to fail (HTTP 400) comes back in the error file and fails its item, with the reason
    failed = [json.loads(x) for x in (tmp_path / "batch" / "rejected.jsonl").read_text().splitlines()]
    failed = [r for r in failed if r["kind"] == "failed"]
    assert failed and all("rejected the request (HTTP 400)" in r["detail"] for r in failed)
    srv, calls = outs["batch"]
    assert calls.get("chat", 0) == 0 and calls["batch_request"] == outs["direct"][1]["chat"]
    # one batch file per stage: evolve, judge and respond of each round, and one more in a round whose cut answers
    # are asked again with more room
    retried = {n for i in range(24) for n in range(1, ROUNDS + 1) if planted(i, n) == "truncated_response"}
    assert retried and calls["batches.create"] == 3 * ROUNDS + len(retried)
    assert not sent_twice(srv)


def test_killed_after_submitting_then_resumed_waits_for_the_stored_batch(tmp_path, reference):
    out, cfg = tmp_path / "run", poll_config(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "EVOL_API_KEY")}
    with ScriptedServer(stateless) as srv:
        srv.batch_hold = True  # the first batch stays in progress until the process is dead
        cmd = args(srv, out, "--batch", "--config", cfg)
        proc = subprocess.Popen(
            [sys.executable, "-m", "evol", *cmd, "--engine", "local"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 60
            # the poller checks a batch only once its id is committed: from then on it is saved
            while srv.calls["batches.retrieve"] < 1:
                assert proc.poll() is None and time.monotonic() < deadline, "the run never polled a batch"
                time.sleep(0.02)
        finally:
            proc.kill()
            proc.wait(30)
        (first,) = srv.batches
        polls_before, sent_before = srv.batches[first]["polls"], list(srv.batch_sent)
        assert srv.calls["batch_request"] == 0  # nothing ran yet
        with sqlite3.connect(out / "calls.sqlite") as db:
            assert db.execute("SELECT batch_id, status FROM batches").fetchall() == [(first, "submitted")]

        srv.batch_hold = False
        resumed = run_cli(*cmd)
    assert resumed.returncode == 0, resumed.stderr
    assert "still pending" in resumed.stderr
    assert srv.batches[first]["polls"] > polls_before and srv.batches[first]["status"] == "completed"
    later = [cid for b, cid in srv.batch_sent[len(sent_before) :]]
    assert not set(later) & {cid for _, cid in sent_before}  # the stored batch's requests were not sent again
    assert not sent_twice(srv)
    assert srv.calls["batch_request"] == len(srv.batch_sent) == reference[1]  # each call answered once, all of them
    assert (out / "dataset.json").read_bytes() == reference[0]


@pytest.mark.parametrize("fate", ["expired", "failed"])
def test_a_batch_that_ends_unfinished_has_its_unanswered_requests_sent_again(tmp_path, reference, fate):
    out = tmp_path / "run"
    with ScriptedServer(stateless) as srv:
        srv.batch_fate = lambda b: fate if b["n"] == 1 else "completed"
        proc = run_cli(*args(srv, out, "--batch", "--config", poll_config(tmp_path)))
    assert proc.returncode == 0, proc.stderr
    first = [cid for b, cid in srv.batch_sent if b == "batch_000001"]
    ran = len(first) // 2 if fate == "expired" else 0  # an expired batch answered its first half
    # exactly the unanswered ones went out again, once; the answered half was never paid twice
    assert sorted(sent_twice(srv)) == sorted(first[ran:])
    assert Counter(cid for _, cid in srv.batch_sent).most_common(1)[0][1] == 2
    assert srv.calls["batch_request"] == reference[1]
    assert (out / "dataset.json").read_bytes() == reference[0]
    with sqlite3.connect(out / "calls.sqlite") as db:
        assert db.execute("SELECT status FROM batches WHERE batch_id='batch_000001'").fetchone() == (fate,)
    assert f"batch_000001 {fate}" in proc.stderr


def test_per_request_errors_fail_their_call_or_go_into_the_next_batch(tmp_path):
    """A 4xx in the error file fails its call at once; a 5xx is sent again, up to --max-retries times."""

    def script(req):
        prompt = last_user(req)
        if prompt == "refused":
            return Reply(status=400, content="this request is not allowed")
        if prompt == "flaky":
            return Reply(status=500, content="overloaded")
        if prompt == "lone":  # a lone surrogate, valid only as a JSON escape: the one completion parser repairs it
            return Reply(content="half an emoji: \ud83d.")
        return Reply(content=f"A: {prompt}")

    async def main(srv):
        cache = CallCache(tmp_path / "calls.sqlite")
        chat = BatchingChat(srv.base_url, None, identity="test", cache=cache, poll_seconds=0.02, max_retries=2)
        await chat.start()

        async def ask(prompt):
            try:
                return (
                    await chat.complete(
                        [{"role": "user", "content": prompt}], model="m", sampling=Sampling(), sample=prompt
                    )
                ).text
            except Exception as exc:
                return exc

        try:
            return await asyncio.gather(*(ask(p) for p in ("fine", "refused", "flaky", "lone")))
        finally:
            await chat.aclose()
            cache.close()

    with ScriptedServer(script) as srv:
        fine, refused, flaky, lone = asyncio.run(main(srv))
    assert fine == "A: fine"
    assert lone == "half an emoji: \ufffd."  # as a direct call gives it, and storable in the cache
    assert isinstance(refused, RequestRejectedError) and "(HTTP 400): this request is not allowed" in str(refused)
    assert isinstance(flaky, TransientBackendError) and "HTTP 500" in str(flaky)
    assert srv.calls["batches.create"] == 3  # the first batch, then two more for the flaky call alone
    assert Counter(cid for _, cid in srv.batch_sent).most_common(2)[1][1] == 1


@pytest.mark.parametrize("created", [True, False])
def test_a_batch_whose_id_was_never_saved_is_found_again(tmp_path, created):
    """Killed between uploading the file and saving the batch id: the next start looks the batch up by its file."""

    async def first_process(srv):
        cache = CallCache(tmp_path / "calls.sqlite")
        chat = BatchingChat(srv.base_url, None, identity="test", cache=cache, poll_seconds=0.02)
        await chat.start()
        save = chat.store.set

        def dies(file_id, status, batch_id=None):
            raise KeyboardInterrupt  # the process dies right after creating the batch, before saving its id

        chat.store.set = dies
        if not created:
            chat._client.batches.create = lambda **kw: (_ for _ in ()).throw(KeyboardInterrupt)
        task = asyncio.ensure_future(
            chat.complete([{"role": "user", "content": "q"}], model="m", sampling=Sampling(), sample="s")
        )
        await asyncio.wait([task, *chat._tasks], timeout=10)
        chat.store.set = save
        task.cancel()
        await chat.aclose()
        cache.close()

    async def second_process(srv):
        cache = CallCache(tmp_path / "calls.sqlite")
        chat = BatchingChat(srv.base_url, None, identity="test", cache=cache, poll_seconds=0.02)
        try:
            await chat.start()
            return (
                await chat.complete([{"role": "user", "content": "q"}], model="m", sampling=Sampling(), sample="s")
            ).text, chat.store.all()
        finally:
            await chat.aclose()
            cache.close()

    with ScriptedServer(stateless) as srv:
        srv.batch_hold = True
        with pytest.raises(KeyboardInterrupt):  # escapes the event loop, as a real kill would end it
            asyncio.run(first_process(srv))
        assert srv.calls["files.create"] == 1 and srv.calls["batches.create"] == int(created)
        srv.batch_hold = False
        text, subs = asyncio.run(second_process(srv))
    assert text.startswith("Reply ")
    assert len(srv.batch_sent) == 1 and srv.calls["batch_request"] == 1  # the one request, sent and run once
    if created:
        assert [(s.batch_id, s.status) for s in subs] == [("batch_000001", "completed")]
    else:
        assert [s.status for s in subs] == ["not_created", "completed"]


def test_batch_with_the_embedded_model_fails_in_one_sentence(tmp_path):
    proc = run_cli("run", "--seeds", str(SEEDS), "--limit", "2", "--batch", "--out", str(tmp_path / "run"))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "--batch" in lines[0] and "embedded local model" in lines[0]
    assert not (tmp_path / "run").exists()  # nothing started: no run folder, no model server


def test_batch_with_the_embedded_model_fails_in_one_sentence_under_prefect_too(tmp_path):
    proc = run_cli(
        "run", "--seeds", str(SEEDS), "--limit", "2", "--batch", "--out", str(tmp_path / "run"), engine="prefect"
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert [x for x in proc.stderr.splitlines() if x.strip()][-1].count("embedded local model") == 1
    assert not (tmp_path / "run").exists()


def test_an_endpoint_without_a_batch_api_stops_before_anything_is_sent(tmp_path):
    with ScriptedServer(stateless, batch_api=False) as srv:
        proc = run_cli(*args(srv, tmp_path / "run", "--batch", "--config", poll_config(tmp_path)))
        calls = dict(srv.calls)
    assert proc.returncode == 4 and "Traceback" not in proc.stderr
    assert "has no Batch API" in proc.stderr and "without --batch" in proc.stderr
    assert set(calls) == {"models"}


def test_batch_on_the_default_engine_runs_locally_and_the_flow_refuses_it(tmp_path, reference):
    """Prefect's batch tasks would each send a small batch file: --batch takes the local engine instead."""
    with ScriptedServer(stateless) as srv:
        proc = run_cli(*args(srv, tmp_path / "run", "--batch", "--config", poll_config(tmp_path)), engine=None)
        assert srv.calls.get("chat", 0) == 0 and srv.calls["batch_request"] == reference[1]
    assert proc.returncode == 0, proc.stderr
    assert "runs on the local engine" in proc.stderr and "flow run" not in proc.stderr
    assert (tmp_path / "run" / "dataset.json").read_bytes() == reference[0]

    from evol.engines.prefect.evol_flow import FlowConfig

    with pytest.raises(ValueError, match="--engine local"):
        FlowConfig(seeds=SEEDS, batch=True)
    served = run_cli("serve", "--seeds", str(SEEDS), "--batch", "--interval", "60", "--base-url", srv.base_url)
    assert served.returncode == 2 and "--batch cannot be served" in served.stderr and "Traceback" not in served.stderr
