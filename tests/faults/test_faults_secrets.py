"""Issue #9, hardening: the API key. It is sent to the endpoint and shown nowhere: not in logs, the manifest,
records, rejected items, the call cache, messages shown to the user, Prefect's parameters, logs or artifacts,
even when the endpoint echoes it back in its error messages."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from pathlib import Path

import pytest
from aiohttp import web

from evol.config import Sampling
from evol.errors import BackendError
from evol.llm.client import OpenAIChat
from evol.testing.server import Reply, ScriptedServer

from ..conftest import run_cli
from ..faultmodel import Model, evol_run, manifest, topics, write_seeds

KEY = "sk-test-SECRET-4c7e19aa0b52d3f8"
FRAGMENTS = (KEY, "SECRET-4c7e19aa", "4c7e19aa0b52d3f8")  # the key, or any recognisable piece of it


def assert_no_key(text: str, where: str) -> None:
    for f in FRAGMENTS:
        assert f not in text, f"the API key ({f}) appears in {where}"


def assert_no_key_in_folder(folder: Path) -> int:
    """Every file under ``folder``, byte for byte (SQLite databases and their journals too); returns how many."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    for p in files:
        data = p.read_bytes()
        for f in FRAGMENTS:
            assert f.encode() not in data, f"the API key ({f}) appears in {p}"
            assert f.encode("utf-16-le") not in data, f"the API key ({f}) appears in {p} (UTF-16)"
    return len(files)


def echoing_model() -> Model:
    """Good answers, except endpoints' error messages that quote the key back, as some proxies do."""
    model = Model()
    model.fail("evolve", Reply(status=400, content=f"Invalid request from key {KEY}: bad parameter"), topic="topic-01")
    model.fail("respond", Reply(status=500, content=f"upstream failed for Bearer {KEY}"), topic="topic-02")
    model.fail(
        "evolve",
        Reply(status=429, content=f"Rate limit reached for {KEY}", headers={"retry-after": "0.01"}),
        topic="topic-03",
        times=1,
    )
    return model


@pytest.mark.slow
def test_the_key_is_used_but_appears_in_no_output_log_or_message(tmp_path):
    seeds = write_seeds(tmp_path / "seeds.jsonl", topics(5))
    model = echoing_model()
    with ScriptedServer(model, require_key=KEY) as srv:
        proc = run_cli(
            "-v",
            "run",
            "--seeds",
            str(seeds),
            "--base-url",
            srv.base_url,
            "--out",
            str(tmp_path / "o"),
            "--rounds",
            "2",
            "--concurrency",
            "2",
            "--max-retries",
            "1",
            "--include-seeds",
            env={"EVOL_API_KEY": KEY},
        )
        sent = set(srv.auth_headers)
    assert proc.returncode == 0, proc.stderr
    assert sent == {f"Bearer {KEY}"}  # every request carried the key: the run really used it
    rejected = [json.loads(line) for line in (tmp_path / "o" / "rejected.jsonl").read_text().splitlines()]
    details = {r["detail"] for r in rejected if r["kind"] == "failed"}
    assert any("HTTP 400" in d for d in details) and any("HTTP 500" in d for d in details)  # the echoes were met
    assert_no_key(proc.stdout, "stdout")
    assert_no_key(proc.stderr, "stderr (with -v)")
    assert assert_no_key_in_folder(tmp_path / "o") >= 5
    assert_no_key(json.dumps(manifest(tmp_path / "o")), "the manifest")


@pytest.mark.parametrize("status", [401, 403])
@pytest.mark.slow
def test_a_refused_key_echoed_by_the_endpoint_is_not_shown_to_the_user(tmp_path, status):
    seeds = write_seeds(tmp_path / "seeds.jsonl", topics(3))
    echo = Reply(
        status=status,
        content=f"Incorrect API key provided: {KEY}. You can find your API key at https://example.invalid/keys.",
    )
    with ScriptedServer(lambda request: echo) as srv:
        proc = evol_run(
            "--seeds", str(seeds), "--base-url", srv.base_url, "--out", str(tmp_path / "o"), env={"EVOL_API_KEY": KEY}
        )
    assert proc.returncode == 4 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("evol: error: ") and str(status) in last
    assert_no_key(proc.stdout + proc.stderr, "the output of the command")
    assert_no_key_in_folder(tmp_path / "o")
    assert manifest(tmp_path / "o")["status"] == "stopped"


@pytest.mark.slow
def test_a_key_refused_at_start_up_with_an_echo_is_not_shown(tmp_path):
    class Refusing(ScriptedServer):
        async def _models(self, request):
            return web.json_response({"error": {"message": f"Incorrect API key provided: {KEY}"}}, status=401)

    seeds = write_seeds(tmp_path / "seeds.jsonl", topics(2))
    with Refusing() as srv:
        proc = evol_run(
            "--seeds", str(seeds), "--base-url", srv.base_url, "--out", str(tmp_path / "o"), env={"EVOL_API_KEY": KEY}
        )
        assert srv.chat_count() == 0
    assert proc.returncode == 4 and "Traceback" not in proc.stderr
    assert "401" in proc.stderr.strip().splitlines()[-1]
    assert_no_key(proc.stdout + proc.stderr, "the output of the command")


ECHOES = {
    "400": Reply(status=400, content=f"bad request for {KEY}"),
    "401": Reply(status=401, content=f"Incorrect API key provided: {KEY}"),
    "403": Reply(status=403, content=f"key {KEY} may not use this model"),
    "404": Reply(status=404, content=f"no model for key {KEY}"),
    "409": Reply(status=409, content=f"conflict for {KEY}"),
    "422": Reply(status=422, content=f"cannot process {KEY}"),
    "429": Reply(status=429, content=f"Rate limit reached for {KEY}", headers={"retry-after": "0"}),
    "500": Reply(status=500, content=f"internal error, key={KEY}"),
    "malformed body": Reply(body=f"<html>Bearer {KEY}</html>"),
    "partial key": Reply(status=400, content="key sk-test-SECRET-4c7e19aa... is not valid"),
}


@pytest.mark.parametrize("case", list(ECHOES))
def test_no_error_message_repeats_the_key(case):
    with ScriptedServer(lambda request: ECHOES[case]) as srv:

        async def go():
            chat = OpenAIChat(srv.base_url, KEY, max_retries=0, timeout=5, max_wait=0.01)
            try:
                await chat.complete([{"role": "user", "content": "hi"}], model="m", sampling=Sampling(), sample="x")
            finally:
                await chat.aclose()

        with pytest.raises(BackendError) as e:
            asyncio.run(go())
    assert_no_key(str(e.value), "the error message")
    assert_no_key(repr(e.value), "the error's repr")


@pytest.mark.slow
def test_the_prefect_engine_keeps_the_key_out_of_parameters_logs_and_artifacts(tmp_path):
    """The default engine: Prefect's database (flow-run parameters, task runs, logs, artifacts) and its
    console logs hold no trace of the key. PREFECT_HOME is the test's, so the database is here to read."""
    home = tmp_path / "prefect-home"
    seeds = write_seeds(tmp_path / "seeds.jsonl", topics(4))
    model = echoing_model()
    env = {k: v for k, v in os.environ.items() if k.startswith("PREFECT_") or k == "EVOL_ENGINE"}
    clear = {k: "" for k in env if k.startswith("PREFECT_API")}
    with ScriptedServer(model, require_key=KEY) as srv:
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
            "1",
            env={**clear, "PREFECT_HOME": str(home), "EVOL_API_KEY": KEY},
            engine="prefect",
        )
        sent = set(srv.auth_headers)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sent == {f"Bearer {KEY}"}
    assert "Beginning flow run" in proc.stderr  # it did go through Prefect
    assert_no_key(proc.stdout + proc.stderr, "the output of the command")
    assert_no_key_in_folder(tmp_path / "o")
    # Prefect's own store: the grep below means something only if the run really wrote there
    db = home / "prefect.db"
    assert db.is_file()
    with sqlite3.connect(db) as con:
        params = [json.loads(p) for (p,) in con.execute("SELECT parameters FROM flow_run")]
        n_artifacts = con.execute("SELECT count(*) FROM artifact").fetchone()[0]
        n_logs = con.execute("SELECT count(*) FROM log").fetchone()[0]
    assert any("config" in p and p["config"].get("seeds") for p in params)
    assert all("api_key" not in json.dumps(p) for p in params)
    assert n_logs > 0
    assert_no_key_in_folder(home)
    assert n_artifacts >= 1  # the flow's summary artifact was in the database that was just grepped
