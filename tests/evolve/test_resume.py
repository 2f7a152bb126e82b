"""Exactly-once spending: a budget stop or a kill -9, then the same command, pays for no finished call again."""

import hashlib
import json

import pytest

from evol.testing.server import Reply, ScriptedServer, last_user

from ..conftest import SEEDS, run_cli

pytestmark = pytest.mark.slow  # a budget stop and a kill, each run again (11 s)


def stateless(req):
    """Answers that depend only on the request, so an interrupted and an uninterrupted run meet the same ones."""
    prompt = last_user(req)
    if "First instruction:" in prompt:
        return Reply(content="Not Equal")
    tag = hashlib.sha256(prompt.encode()).hexdigest()[:12]
    return Reply(content=f"Reply {tag}: " + " ".join(f"w{tag}{i}" for i in range(30)))


def key(req):
    return json.dumps(req, sort_keys=True)


ARGS = ("run", "--seeds", str(SEEDS), "--limit", "30", "--rounds", "2", "--seed", "3", "--concurrency", "4")


def test_budget_stop_then_resume_pays_each_call_once(tmp_path):
    with ScriptedServer(stateless, models=("gpt-4o-mini",)) as srv:
        full = run_cli(*ARGS, "--base-url", srv.base_url, "--out", str(tmp_path / "full"))
        assert full.returncode == 0, full.stderr
        every = [key(r) for r in srv.requests]
    with ScriptedServer(stateless, models=("gpt-4o-mini",)) as srv:
        stopped = run_cli(*ARGS, "--base-url", srv.base_url, "--out", str(tmp_path / "b"), "--budget-usd", "0.0005")
        first = [key(r) for r in srv.requests]
        m = json.loads((tmp_path / "b" / "manifest.json").read_text())
        assert stopped.returncode == 6 and "budget" in stopped.stderr and "Traceback" not in stopped.stderr
        assert m["status"] == "budget_exhausted" and 0 < len(first) < len(every)
        resumed = run_cli(*ARGS, "--base-url", srv.base_url, "--out", str(tmp_path / "b"))
        second = [key(r) for r in srv.requests][len(first) :]
    assert resumed.returncode == 0, resumed.stderr
    assert not set(first) & set(second)  # nothing answered before the stop was sent again
    assert sorted(first + second) == sorted(every)
    assert (tmp_path / "b" / "dataset.json").read_bytes() == (tmp_path / "full" / "dataset.json").read_bytes()
