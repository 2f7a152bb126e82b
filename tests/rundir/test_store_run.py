"""A run folder at an s3:// URL on a real S3-compatible server on loopback (moto's), through the CLI."""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import pytest

from evol.seeds import load_seeds
from evol.testing.server import Reply, ScriptedServer, last_user

from ..conftest import ROOT, SEEDS, run_cli
from ..e2e import test_crash as crash
from ..e2e.test_crash import LedgerServer, stateless, uninterrupted  # noqa: F401 (a fixture)
from ..scripted import EvolScript

pytestmark = pytest.mark.slow  # subprocess runs of the CLI

LIMIT = "24"


def _run(out: str, srv: ScriptedServer, env: dict | None = None, *extra: str, seeds: str = str(SEEDS)):
    return run_cli(
        "run",
        "--seeds",
        seeds,
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
    # the run's log is the run's, not the S3 client's note of where it found credentials, for every connection
    assert "credentials" not in remote.stderr and "Found endpoint" not in remote.stderr, remote.stderr


def test_seeds_at_an_s3_url_file_or_folder_give_the_run_the_local_seeds_give(s3, tmp_path):
    """The team's seeds live in the bucket too: a file URL and a folder URL read as the local file reads."""
    s3.fs.pipe_file(f"{s3.bucket}/seeds/self_instruct.jsonl", SEEDS.read_bytes())
    s3.fs.pipe_file(f"{s3.bucket}/seeds/notes.md", b"not a seed file: a folder's other files are left alone\n")
    with ScriptedServer(script()) as srv:
        assert _run(str(tmp_path / "local"), srv).returncode == 0
    for name, seeds in (("file", s3.url("seeds/self_instruct.jsonl")), ("folder", s3.url("seeds"))):
        with ScriptedServer(script()) as srv:
            r = _run(str(tmp_path / name), srv, s3.env, seeds=seeds)
            assert r.returncode == 0, r.stderr
        for out in ("dataset.json", "records.jsonl", "rejected.jsonl"):
            assert (tmp_path / name / out).read_bytes() == (tmp_path / "local" / out).read_bytes(), (name, out)
        manifest = json.loads((tmp_path / name / "manifest.json").read_text())
        assert manifest["seed_files"] == [s3.url("seeds/self_instruct.jsonl")]  # the URL, not a temporary copy
        assert manifest["config"]["seeds"] == seeds

    with ScriptedServer(script()) as srv:
        missing = _run(str(tmp_path / "missing"), srv, s3.env, seeds=s3.url("seeds/nope.jsonl"))
        assert srv.chat_count() == 0
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert s3.url("seeds/nope.jsonl") in missing.stderr and "does not exist" in missing.stderr


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
            crash.wait_for(
                lambda: srv.phase == "hold", "the server to hold its replies", proc, timeout=crash.RUN_TIMEOUT
            )
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


def judge(request: dict) -> Reply:
    """A judge whose score follows from the prompt alone."""
    h = int.from_bytes(hashlib.sha256(last_user(request).encode()).digest()[:2], "big")
    return Reply(content=f"Score: {h % 10 + 1}")


def test_score_export_report_and_dedup_read_and_write_s3_folders_as_local_ones(s3, tmp_path):
    """The same run in a local folder and at an s3:// URL; every command after it gives the same files for both."""
    local = tmp_path / "local"
    with ScriptedServer(script()) as srv:
        assert _run(str(local), srv).returncode == 0
    with ScriptedServer(script()) as srv:
        assert _run(s3.url("run"), srv, s3.env).returncode == 0
    with ScriptedServer(judge) as srv:
        for where in (str(local), s3.url("run")):
            r = run_cli("score", where, "--base-url", srv.base_url, "--no-seeds", "--method", "direct", env=s3.env)
            assert r.returncode == 0, r.stderr
        paid = srv.chat_count()
        again = run_cli(
            "score", s3.url("run"), "--base-url", srv.base_url, "--no-seeds", "--method", "direct", env=s3.env
        )
        assert again.returncode == 0 and srv.chat_count() == paid  # the judge's answers are in the bucket's shards
    assert json.loads(again.stdout)["scores"] == s3.url("run/scores.jsonl")
    assert s3.read("run/scores.jsonl") == (local / "scores.jsonl").read_bytes()

    for where, out in ((str(local), str(tmp_path / "export")), (s3.url("run"), s3.url("export"))):
        r = run_cli("export", where, "--out", out, "--format", "jsonl", "--select", "10", env=s3.env)
        assert r.returncode == 0, r.stderr

    def rows(data: bytes) -> list[dict]:  # the run id names the endpoint, and the two runs had a server each
        return [{k: v for k, v in json.loads(line).items() if k != "run_id"} for line in data.splitlines()]

    assert rows(s3.read("export/train.jsonl")) == rows((tmp_path / "export" / "train.jsonl").read_bytes())
    assert json.loads(s3.read("export/export.json"))["sources"][0]["path"] == s3.url("run")
    assert json.loads(s3.read("export/export.json"))["selected"]

    r = run_cli("report", s3.url("run"), "--export", s3.url("export"), env=s3.env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["report"] == s3.url("run/report/report.html")
    page = s3.read("run/report/report.html").decode()
    assert "<html" in page and "funnel" in page.lower()
    assert any(n.endswith(".png") for n in s3.names("run/report"))
    assert not any(n.startswith("run/calls/") and n.endswith(".json") for n in s3.names("run"))  # shards merged

    rows = [json.dumps({"instruction": f"Task {i % 7}", "output": "x"}) for i in range(20)]
    s3.fs.pipe_file(f"{s3.bucket}/data/in.jsonl", ("\n".join(rows) + "\n").encode())
    r = run_cli("dedup", s3.url("data/in.jsonl"), "--out", s3.url("data/out.jsonl"), env=s3.env)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["kept"] == 7 and summary["out"] == s3.url("data/out.jsonl")
    assert summary["removed_log"] == s3.url("data/out.removed.jsonl")
    assert len(s3.read("data/out.jsonl").splitlines()) == 7
    assert len(s3.read("data/out.removed.jsonl").splitlines()) == 13
