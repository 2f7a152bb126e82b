"""Where a run folder can be: a URL evol cannot serve, a missing bucket, missing credentials or a store that does not
answer each fail in one sentence, before any call is paid and without a secret in sight (moto's S3 on loopback)."""

from __future__ import annotations

import os
import socket
import time

import pytest

from evol.config import RunConfig
from evol.errors import ConfigError
from evol.rundir.shards import Shards
from evol.rundir.store import Remote, local_or_url
from evol.testing.server import ScriptedServer

from ..conftest import ROOT, SEEDS, run_cli
from ..s3kit import FAKE_KEYS, without_credentials


@pytest.mark.parametrize(
    "given, kept",
    [
        ("runs/a", "runs/a"),
        ("runs/a/", "runs/a"),
        ("file:///tmp/x/run", "/tmp/x/run"),
        ("s3://bucket/prefix/", "s3://bucket/prefix"),
        ("S3://bucket/p", "s3://bucket/p"),
        ("gs://b/p", "gs://b/p"),
        ("az://container/p", "az://container/p"),
    ],
)
def test_locations_are_kept_as_paths_or_urls(given, kept):
    assert local_or_url(given) == kept
    assert RunConfig(seeds=SEEDS, out=given).out == kept


@pytest.mark.parametrize("given", ["ftp://host/run", "http://host/run", "memory://run", "s3://", "s3:/"])
def test_a_url_evol_cannot_serve_is_refused_in_one_sentence(given):
    with pytest.raises(ConfigError) as info:
        local_or_url(given)
    assert "\n" not in str(info.value) and given.split(":")[0] in str(info.value)


def _no_call(srv: ScriptedServer, *args: str, env: dict) -> tuple[int, str]:
    r = run_cli(
        "run", "--seeds", str(SEEDS), "--limit", "3", "--rounds", "1", "--base-url", srv.base_url, *args, env=env
    )
    assert srv.chat_count() == 0, "a call was paid before the store was found wanting"
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("evol: error: "), r.stderr
    assert "Traceback" not in r.stderr
    assert FAKE_KEYS["AWS_SECRET_ACCESS_KEY"] not in r.stderr + r.stdout
    return r.returncode, lines[-1]


@pytest.mark.slow  # subprocess runs of the CLI
def test_a_bad_location_fails_before_any_call_is_paid(s3, tmp_path, monkeypatch):
    with ScriptedServer() as srv:
        code, line = _no_call(srv, "--out", "ftp://host/run", env=s3.env)
        assert code == 2 and "ftp://" in line
        assert not (ROOT / "ftp:").exists()

        code, line = _no_call(srv, "--out", "s3://no-such-bucket-evol/run", env=s3.env)
        assert code == 2 and "no-such-bucket-evol" in line

        with monkeypatch.context() as m:  # the subprocess inherits this process's environment, keys and all
            for name in FAKE_KEYS:
                m.delenv(name)
            code, line = _no_call(srv, "--out", s3.url("run"), env=without_credentials(s3.env, str(tmp_path)))
        assert code == 2 and "credentials" in line

        with socket.socket() as sock:  # a loopback port nothing listens on
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        started = time.monotonic()
        code, line = _no_call(
            srv, "--out", s3.url("run"), env={**s3.env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
        )
        assert code == 2 and s3.url("run") in line
        assert time.monotonic() - started < 60
    assert not s3.names()  # nothing was written into the bucket


def test_shards_hold_every_answer_once_merged_and_loose_alike(s3):
    remote = Remote.open(s3.url("run"))
    a, b = Shards(remote, "host-a"), Shards(remote, "host-b")
    a.add(b"\x01" * 20, {"text": "one"})
    b.add(b"\x02" * 20, {"text": "two"})
    assert Shards(remote).merge() == 2
    a.add(b"\x03" * 20, {"text": "three"})  # after the merge: loose again
    got = {key: row["text"] for key, row in Shards(remote).rows()}
    assert got == {b"\x01" * 20: "one", b"\x02" * 20: "two", b"\x03" * 20: "three"}
    assert [n for n in s3.names("run/calls") if n.endswith(".json")] == [f"run/calls/{'03' * 20}.json"]
    assert Shards(remote).get(b"\x03" * 20) == {"text": "three"} and Shards(remote).get(b"\x01" * 20) is None


def test_environment_is_untouched_by_the_fixture_outside_it():
    assert os.environ.get("AWS_SECRET_ACCESS_KEY") != FAKE_KEYS["AWS_SECRET_ACCESS_KEY"]
