"""kill -9 in the middle of a run over conversations (``--turns``), then the same command: the same dataset, and
nothing the server answered before the kill is paid again (test_crash.py's ledger server and kill)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from evol.testing.server import Reply

from ..conftest import ROOT
from ..conversations import ConversationModel, write_seeds
from .test_crash import LedgerServer, finish, kill_once_held

pytestmark = pytest.mark.slow


def slow(model: ConversationModel):
    def script(request: dict) -> Reply:
        reply = model(request)
        reply.delay = 0.02  # the run lasts long enough to be killed in the middle
        return reply

    return script


def start(seeds: Path, out: Path, url: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "EVOL_API_KEY")}
    args = ["run", "--engine", "local", "--seeds", str(seeds), "--rounds", "3", "--turns", "4"]
    args += ["--operation-weight", "follow_up=6", "--concurrency", "2", "--base-url", url, "--out", str(out)]
    return subprocess.Popen(
        [sys.executable, "-m", "evol", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )


def test_kill9_in_a_conversation_run_then_resume_gives_the_same_dataset(tmp_path):
    seeds = write_seeds(tmp_path / "c.jsonl")
    with LedgerServer(slow(ConversationModel())) as srv:
        code, _, err = finish(start(seeds, tmp_path / "full", srv.base_url))
        assert code == 0, err
        _, every = srv.snapshot()
    with LedgerServer(slow(ConversationModel()), hold_after=int(0.4 * len(every))) as srv:
        kill_once_held(srv, start(seeds, tmp_path / "o", srv.base_url), tmp_path / "o")
        answered_before, sent_before = srv.snapshot()
        srv.phase = "resume"
        code, _, err = finish(start(seeds, tmp_path / "o", srv.base_url))
        assert code == 0, err
        _, sent = srv.snapshot()
    after = Counter(sent[len(sent_before) :])
    # nothing answered before the kill is sent again: before and after add up to one uninterrupted run
    assert Counter(answered_before) + after == Counter(every)
    for name in ("dataset.json", "records.jsonl", "rejected.jsonl"):
        assert (tmp_path / "o" / name).read_bytes() == (tmp_path / "full" / name).read_bytes(), name
    assert b'"history"' in (tmp_path / "o" / "records.jsonl").read_bytes()  # it was a run over conversations
