"""``evol score``: complexity and quality from a judge that chatters, thinks aloud, gets cut off, refuses and
answers in other languages; resumed after kill -9 and after a spent budget with nothing paid twice."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from evol.cli.main import main as cli
from evol.quality.score_reader import read_score
from evol.quality.scoring import Score, load_scores
from evol.testing.server import Reply, ScriptedServer, last_user

from ..output.test_export import ROOT, SEEDS, make_run, records

# (answer, finish_reason, expected score or unclear outcome): what a real judge sends back
STYLES = [
    ("Score: 7", "stop", 7),
    ("<think>The instruction has 3 parts; maybe a 4? No, the constraints interact.</think>\nScore: 8", "stop", 8),
    ("**Score:** 6/10\n\nThe task needs several steps but no special knowledge.", "stop", 6),
    (
        "Sure! Let me look at this carefully.\n\nIt asks for 2 things and one of them is subtle.\n\nFinal score: 5",
        "stop",
        5,
    ),
    ("<think>Let me weigh the 3 constraints one by one. First, the", "length", "truncated"),
    ("I'm sorry, but I can't help with rating this request.", "stop", "refused"),
    ("Puntuación: 9", "stop", 9),
    ("评分：4", "stop", 4),
    ("I would rate it a 3 on a scale of 1 to 10.", "stop", 3),
    ("Score: 42", "stop", "out_of_range"),
    ("Quite demanding, honestly.", "stop", "no_score"),
]


def style(prompt: str) -> tuple[str, str, object]:
    return STYLES[int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:4], "big") % len(STYLES)]


def judge(request: dict) -> Reply:
    text, finish, _ = style(last_user(request))
    return Reply(content=text, finish_reason=finish)


def expected(prompt: str) -> object:
    return style(prompt)[2]


@pytest.mark.parametrize(
    "answer, finish, want",
    [
        *STYLES,
        ("", "stop", "empty"),
        ("<think>only thinking, and then nothing", "stop", "empty"),
        ("Note : 7/10", "stop", 7),
        ("Je donne 7 sur 10.", "stop", 7),
        ("Die Bewertung ist 8.", "stop", 8),
        ("Score: 85/100", "stop", 8.5),
        ("Score: 0", "stop", "out_of_range"),
        ("Rating: 8\nNote: 2 parts are vague", "stop", 8),
        ("Complexity: moderate (6)", "stop", 6),
        ("This is a moderately complex task.\n\n7", "stop", 7),
        ("Score: 7", "content_filter", "content_filtered"),
    ],
)
def test_read_score(answer, finish, want):
    got = read_score(answer, finish)
    if isinstance(want, str):
        assert got.value is None and got.unclear.outcome == want and got.unclear.answer == answer[:300]
    else:
        assert got.value == want and got.unclear is None


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("runs") / "r", SEEDS, "--include-seeds", "--engine", "local")


def copy_of(run: Path, to: Path) -> Path:
    """The run as 'evol run' left it (its call cache too), never scored: each test scores its own copy."""
    shutil.copytree(run, to)
    return to


@pytest.mark.slow
def test_scores_from_a_realistic_judge(run, tmp_path):
    run = copy_of(run, tmp_path / "r")
    with ScriptedServer(judge) as srv:
        assert (
            cli(["-q", "score", str(run), "--method", "direct", "--base-url", srv.base_url, "--concurrency", "4"]) == 0
        )
        seen = list(srv.requests)
    scores = load_scores(run)
    recs = records(run)
    assert {r["id"] for r in recs} <= set(scores)
    by_instruction = {r["instruction"]: r for r in recs}
    checked = 0
    for body in seen:
        prompt = last_user(body)
        instruction = prompt.split("Instruction:\n", 1)[1].split("\n\nResponse:\n", 1)[0].rsplit("\n\nReply with", 1)[0]
        criterion = "quality" if "\n\nResponse:\n" in prompt else "complexity"
        row = by_instruction.get(instruction)
        if row is None:
            continue  # a seed the run did not answer: complexity only
        score = scores[row["id"]]
        want = expected(prompt)
        if isinstance(want, str):
            assert getattr(score, criterion) is None and score.unclear[criterion].outcome == want
        else:
            assert getattr(score, criterion) == want and criterion not in score.unclear
        checked += 1
    assert checked == 2 * len(recs)  # each kept row: its complexity and its quality
    outcomes = {u.outcome for s in scores.values() for u in s.unclear.values()}
    assert {"truncated", "refused"} <= outcomes  # the sample meets both
    # each line holds the model's fields, nothing else
    for line in (run / "scores.jsonl").read_text().splitlines():
        assert set(json.loads(line)) == set(Score.model_fields)


class Ledger:
    """A judge that answers the first ``hold_after`` requests, then holds every later one until released."""

    def __init__(self, hold_after: int | None):
        self.hold_after = hold_after
        self.answered: list[str] = []
        self.release = threading.Event()

    async def script(self, request: dict) -> Reply:
        prompt = last_user(request)
        if self.hold_after is not None and len(self.answered) >= self.hold_after:
            deadline = time.monotonic() + 60
            while not self.release.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            return Reply(status=503, content="held, never answered")
        self.answered.append(prompt)
        return judge(request)


def cached_calls(run: Path) -> int:
    with sqlite3.connect(run / "calls.sqlite") as db:
        return db.execute("SELECT count(*) FROM calls").fetchone()[0]


def score_cli(run: Path, url: str, *args: str) -> tuple[list[str], dict[str, str]]:
    """``python -m evol score`` as a user runs it, without any API key from this environment."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "EVOL_API_KEY")}
    return [sys.executable, "-m", "evol", "-q", "score", str(run), "--base-url", url, *args], env


@pytest.mark.slow
def test_killed_scoring_resumes_without_paying_twice(run, tmp_path):
    target = copy_of(run, tmp_path / "r")
    before, hold = cached_calls(target), 7
    first = Ledger(hold)
    with ScriptedServer(first.script) as srv:
        command, env = score_cli(target, srv.base_url, "--concurrency", "2")
        proc = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 60
            while cached_calls(target) < before + hold and time.monotonic() < deadline:
                time.sleep(0.05)
            assert cached_calls(target) == before + hold
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            first.release.set()
    assert not (target / "scores.jsonl").exists()  # killed before it wrote anything
    second = Ledger(None)
    with ScriptedServer(second.script) as srv:
        command, env = score_cli(target, srv.base_url, "--concurrency", "2")
        done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert not set(second.answered) & set(first.answered)  # no answer the first run stored was asked for again
    assert len(first.answered) == hold
    assert cached_calls(target) == before + len(first.answered) + len(second.answered)
    # and the scores equal those of a scoring that was never interrupted
    fresh = copy_of(run, tmp_path / "fresh")
    with ScriptedServer(judge) as srv:
        assert cli(["-q", "score", str(fresh), "--base-url", srv.base_url]) == 0
    assert load_scores(target) == load_scores(fresh)


@pytest.mark.slow
def test_budget_stops_scoring_cleanly_and_the_same_command_goes_on(run, tmp_path):
    target = copy_of(run, tmp_path / "r")
    with ScriptedServer(judge, models=("scripted-model", "gpt-4o")) as srv:
        command, env = score_cli(
            target, srv.base_url, "--model", "gpt-4o", "--concurrency", "1", "--budget-usd", "0.001"
        )
        stopped = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
        paid_first = srv.chat_count()
        partial = load_scores(target)
        command, env = score_cli(target, srv.base_url, "--model", "gpt-4o", "--budget-usd", "5")
        done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
        prompts = [last_user(b) for b in srv.requests]
    assert stopped.returncode == 6
    err = [x for x in stopped.stderr.splitlines() if x.strip()]
    assert len(err) == 1 and "The budget of $" in err[0] and "Traceback" not in stopped.stderr
    assert 0 < len(partial) < len(records(target)) and 2 <= paid_first <= 4
    assert done.returncode == 0, done.stderr
    assert len(prompts) == len(set(prompts))  # every call paid once, across both commands
    assert len(load_scores(target)) > len(partial)


def test_a_failed_call_is_recorded_and_asked_again_next_time(run, tmp_path):
    target = copy_of(run, tmp_path / "r")

    def refusing_quality(request: dict) -> Reply:
        if "\n\nResponse:\n" in last_user(request):
            return Reply(status=400, content="this request is not allowed")  # one request refused, not the run
        return Reply(content="Score: 5")

    with ScriptedServer(refusing_quality) as srv:
        assert cli(["-q", "score", str(target), "--method", "direct", "--base-url", srv.base_url]) == 0
    first = load_scores(target)
    answered = [s for s in first.values() if "quality" in s.unclear]
    assert answered and all(s.quality is None and s.unclear["quality"].outcome == "failed" for s in answered)
    assert all("not allowed" in s.unclear["quality"].answer for s in answered)  # the endpoint's reason, kept
    assert all(s.complexity == 5 for s in first.values())
    with ScriptedServer(lambda request: Reply(content="Score: 9")) as srv:
        assert cli(["-q", "score", str(target), "--method", "direct", "--base-url", srv.base_url]) == 0
        asked = [last_user(b) for b in srv.requests]
    assert len(asked) == len(answered) and all("\n\nResponse:\n" in p for p in asked)  # only the failed ones
    assert all(
        s.quality == 9 and s.complexity == 5 and not s.unclear
        for s in load_scores(target).values()
        if s.id in {a.id for a in answered}
    )
