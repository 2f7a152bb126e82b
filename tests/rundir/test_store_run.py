"""A run folder at an s3:// URL on a real S3-compatible server on loopback (moto's), through the CLI."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from evol.seeds import load_seeds
from evol.testing.server import ScriptedServer

from ..conftest import ROOT, SEEDS, run_cli
from ..e2e import test_crash as crash
from ..e2e.test_crash import LedgerServer, stateless, uninterrupted  # noqa: F401 (a fixture)
from ..scripted import EvolScript

pytestmark = pytest.mark.slow  # subprocess runs of the CLI

LIMIT = "24"


def _run(out: str, srv: ScriptedServer, env: dict | None = None, *extra: str):
    return run_cli(
        "run",
        "--seeds",
        str(SEEDS),
        "--limit",
        LIMIT,
        "--rounds",
        "2",
        "--seed",
        "7",
        "--out",
        out,
        "--base-url",
        srv.base_url,
        "--concurrency",
        "8",
        *extra,
        env=env,
    )


def script() -> EvolScript:
    """A fresh scripted model (its answers follow the order of the calls it has seen)."""
    seeds = load_seeds(SEEDS, limit=int(LIMIT)).seeds
    return EvolScript([s.instruction for s in seeds])


def test_a_run_into_s3_is_byte_identical_to_one_into_a_local_folder(s3, tmp_path):
    with ScriptedServer(script()) as srv:
        local = _run(str(tmp_path / "local"), srv)
        assert local.returncode == 0, local.stderr
        paid_local = srv.chat_count()
    with ScriptedServer(script()) as srv:
        remote = _run(s3.url("runs/a"), srv, s3.env)
        assert remote.returncode == 0, remote.stderr
        paid_remote = srv.chat_count()
    assert json.loads(remote.stdout)["out"] == s3.url("runs/a")
    for name in ("dataset.json", "records.jsonl", "rejected.jsonl"):
        assert s3.read(f"runs/a/{name}") == (tmp_path / "local" / name).read_bytes(), name
    manifest = json.loads(s3.read("runs/a/manifest.json"))
    assert manifest["out"] == s3.url("runs/a") and manifest["status"] == "complete"
    assert paid_remote == paid_local > 0
    names = s3.names("runs/a")
    assert not any(n.endswith("calls.sqlite") for n in names)
    assert [n for n in names if n.startswith("runs/a/calls/")], names  # the cache went to shards
    assert not (ROOT / "s3:").exists()  # where a URL once became a local folder


def _answers_on_s3(s3, prefix: str) -> int:
    """Answers the run folder's call cache holds: loose shard objects plus the lines of the merged files."""
    n = 0
    for name in s3.names(f"{prefix}/calls"):
        if name.endswith(".jsonl"):
            n += sum(1 for line in s3.read(name).splitlines() if line.strip())
        elif name.endswith(".json"):
            n += 1
    return n


def test_kill9_of_a_run_into_s3_then_rerun_on_a_fresh_host_pays_only_calls_in_flight(s3, tmp_path, uninterrupted):  # noqa: F811
    """The resumed run has a working directory of its own (another host, as far as it can tell): all it shares
    with the killed one is the bucket."""
    full, every = uninterrupted
    prefix = "runs/crashed"
    with LedgerServer(stateless, hold_after=int(0.4 * len(every))) as srv:
        here = tmp_path / "this-host"
        here.mkdir()  # the run's local working folder goes here (TMPDIR), not into the machine's /tmp
        proc = crash.start(s3.url(prefix), srv.base_url, env={**s3.env, "TMPDIR": str(here)})  # type: ignore[arg-type]
        try:
            crash.wait_for(lambda: srv.phase == "hold", "the server to hold its replies", proc)
            crash.wait_for(
                lambda: srv.writing == 0 and _answers_on_s3(s3, prefix) == len(srv.answered),
                "the client to store every answer it received in the bucket",
                proc,
            )
            crash.kill9(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        answered_before, sent_before = srv.snapshot()
        in_flight = list(srv.held)
        srv.phase = "resume"
        assert in_flight and srv.hold_after <= len(answered_before) < len(every)
        elsewhere = tmp_path / "other-host"
        elsewhere.mkdir()
        env = {**s3.env, "TMPDIR": str(elsewhere)}
        code, _, err = crash.finish(crash.start(s3.url(prefix), srv.base_url, env=env))  # type: ignore[arg-type]
        assert code == 0, err
        _, sent = srv.snapshot()
        sent_after = sent[len(sent_before) :]
    before, after, one_run = Counter(answered_before), Counter(sent_after), Counter(every)
    assert before + after == one_run, f"paid twice: {sum((before + after - one_run).values())}"
    assert Counter(in_flight) - after == Counter()
    for name in ("dataset.json", "records.jsonl", "rejected.jsonl"):
        assert s3.read(f"{prefix}/{name}") == (full / name).read_bytes(), name
    m = json.loads(s3.read(f"{prefix}/manifest.json"))
    assert m["status"] == "complete" and m["counts"] == crash.manifest(full)["counts"]
    assert m["cache"]["hits"] == len(answered_before) and m["cache"]["misses"] == len(sent_after)
