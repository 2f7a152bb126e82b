"""Live progress and the end-of-run summary: the numbers shown are the run's, on a terminal and off it."""

from __future__ import annotations

import io
import json
import os
import pty
import select
import subprocess
import sys
from typing import Literal

import pytest
from rich.console import Console

from evol.evolve import progress
from evol.models import Completion, Record, Rejection, Usage
from evol.pricing import Price
from evol.rundir.manifest import Manifest

from ..conftest import ROOT, SEEDS, run_cli


def _record(i: int) -> Record:
    return Record(
        id=f"s{i}.r1",
        seed_id=f"s{i}",
        seed_index=i,
        parent_id=f"s{i}",
        round=1,
        operation="deepen",
        instruction=f"instruction {i}",
        output="an answer",
        response_model="m",
    )


def _rejection(
    i: int, rule: str, kind: Literal["eliminated", "duplicate", "failed", "skipped"] = "eliminated"
) -> Rejection:
    return Rejection(
        kind=kind,
        rule=rule,
        detail="",
        stage="evolve",
        id=f"s{i}.r1",
        seed_id=f"s{i}",
        seed_index=i,
        parent_id=f"s{i}",
        round=1,
        operation="deepen",
        instruction=f"instruction {i}",
    )


def _render(p: progress.Progress) -> str:
    console = Console(record=True, width=160, file=io.StringIO())
    console.print(p)
    return console.export_text()


def test_progress_shows_items_calls_tokens_cost_and_reasons():
    p = progress.Progress({"m": Price(input=1.0, output=2.0)})
    p.round_start(2, 3, total=4)
    for stage in ("evolve", "evolve", "judge", "respond"):
        p.call(
            stage, "m", Completion(text="x", usage=Usage(prompt_tokens=500_000, completion_tokens=250_000), model="m")
        )
    p.call("evolve", "m", Completion(text="x", usage=Usage(), model="m", cached=True))
    p.items([_record(1), _rejection(2, "prompt_leak"), _rejection(3, "prompt_leak")])
    p.item(_record(1))  # a batch reported again (Prefect) does not count twice
    text = _render(p)
    assert "round 2/3" in text and "3/4 items" in text
    assert "evolve 3 (1 cached)" in text and "judge 1" in text and "respond 1" in text
    assert "2,000,000 in" in text and "1,000,000 out" in text
    assert "cost $4.0000" in text  # 2M in at $1/M + 1M out at $2/M
    assert "kept    1" in text and "prompt_leak 2" in text

    p.settled([_rejection(1, "near_duplicate", kind="duplicate")])  # dedup, after the round
    text = _render(p)
    assert "kept    0" in text and "near_duplicate 1" in text
    p.round_start(3, 3, total=4)
    assert "0/4 items" in _render(p)


def test_live_reports_the_tally_only_while_open():
    with progress.live(enabled=True) as p:
        assert progress.current() is p
        tally = progress.LiveTally()
        tally.add("judge", "m", Completion(text="Equal", usage=Usage(prompt_tokens=3, completion_tokens=1), model="m"))
        assert p.calls["judge"] == 1 and tally.calls["judge"] == 1
    assert isinstance(progress.current(), progress.NullProgress) and not isinstance(
        progress.current(), progress.Progress
    )
    progress.LiveTally().add("judge", "m", Completion(text="x", usage=Usage(), model="m"))
    assert p.calls["judge"] == 1


def test_summary_of_a_stopped_run_says_how_to_resume():
    manifest = {
        "run_id": "general-abc",
        "status": "budget_exhausted",
        "reason": "The budget of $1.00 is reached",
        "out": "/tmp/run",
        "seconds": 3725,
        "counts": {
            "dataset_rows": 7,
            "seeds": 10,
            "seeds_skipped": 1,
            "rounds_done": 1,
            "seeds_with_kept_descendants": 7,
            "attempts": 10,
            "kept": 7,
            "eliminated": 2,
            "duplicate": 1,
            "failed": 0,
        },
        "by_rule": {"prompt_leak": 2, "near_duplicate": 1},
        "usage": {
            "calls": {"evolve": 10, "judge": 9},
            "calls_from_cache": {"evolve": 4},
            "tokens_total": {"prompt_tokens": 1234, "completion_tokens": 567},
        },
        "cost_usd": {"total": 1.0001, "unpriced_models": []},
    }
    text = progress.summary(Manifest.model_validate(manifest))
    assert text.splitlines()[0] == "evol run general-abc: budget_exhausted (The budget of $1.00 is reached)"
    assert "7 rows in /tmp/run/dataset.json" in text and "prompt_leak 2, near_duplicate 1" in text
    assert "evolve 10 (4 from cache), judge 9" in text and "cost $1.0001" in text and "1:02:05" in text
    assert "run the same command again" in text
    assert len(text.splitlines()) <= 24  # one screen


def _args(server, out):
    return (
        "run",
        "--seeds",
        str(SEEDS),
        "--limit",
        "12",
        "--rounds",
        "2",
        "--base-url",
        server.base_url,
        "--out",
        str(out),
        "--concurrency",
        "2",
    )


@pytest.mark.slow
def test_off_a_terminal_there_is_no_live_display_but_a_summary(server, tmp_path):
    proc = run_cli(*_args(server, tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    assert "\x1b[" not in proc.stderr and "items" not in proc.stderr  # no drawing when nobody watches
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert f"evol run {manifest['run_id']}: complete" in proc.stderr
    assert f"{manifest['counts']['dataset_rows']} rows in" in proc.stderr
    quiet = run_cli("-q", *_args(server, tmp_path / "q"))
    assert quiet.returncode == 0 and quiet.stderr == ""


@pytest.mark.slow
def test_on_a_terminal_progress_is_drawn_and_then_cleared(server, tmp_path):
    server.script = lambda req: __import__("evol.testing.server", fromlist=["Reply"]).Reply(
        content="A new task: " + req["messages"][-1]["content"][-80:][::-1], delay=0.05
    )
    main, child = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "EVOL_API_KEY")}
    env.update(COLUMNS="160", TERM="xterm")
    proc = subprocess.Popen(
        [sys.executable, "-m", "evol", *_args(server, tmp_path / "t"), "--engine", "local"],
        stdout=subprocess.PIPE,
        stderr=child,
        cwd=ROOT,
        env=env,
    )
    os.close(child)
    seen = b""
    try:
        while True:
            ready, _, _ = select.select([main], [], [], 60)
            if not ready:
                break
            try:
                chunk = os.read(main, 65536)
            except OSError:  # the child closed its end
                break
            if not chunk:
                break
            seen += chunk
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(main)
    text = seen.decode("utf-8", "replace")
    assert "round 1/2" in text and "round 2/2" in text and "/12 items" in text  # drawn while running
    assert "calls   evolve" in text
    assert "\x1b[2K" in text  # and cleared when done, before the summary
    assert "rows in" in text.rsplit("\x1b[2K", 1)[1]


def _manifest(**backend) -> Manifest:
    counts = {"seeds": 1, "attempts": 1, "kept": 1, "dataset_rows": 2}
    return Manifest.model_validate(
        {"run_id": "general-abc", "status": "complete", "out": "/tmp/run", "counts": counts, "backend": backend}
    )


def test_the_summary_says_when_the_judge_judges_its_own_work():
    same = progress.summary(_manifest(evolve_model="m", response_model="m", judge_model="m"))
    line = next(x for x in same.splitlines() if x.startswith("  judge "))
    assert "the judge m also wrote the evolutions and the answers" in line and "--judge-model" in line
    answers_only = progress.summary(_manifest(evolve_model="a", response_model="b", judge_model="b"))
    assert "also wrote the answers:" in answers_only
    candidates = _manifest(evolve_model="a", response_model="b", response_models=["b", "c"], judge_model="c")
    assert candidates.backend.self_judged() == ("answers",)  # one of several responders is the judge too
    other = progress.summary(_manifest(evolve_model="a", response_model="a", judge_model="j"))
    assert not any(x.startswith("  judge ") for x in other.splitlines()) and "also wrote" not in other


@pytest.mark.slow
def test_every_judged_row_records_its_judge_and_a_self_judged_run_says_so(server, tmp_path):
    from evol.testing.replies import GIVEN, given_prompt
    from evol.testing.server import Reply

    def script(req):
        prompt = req["messages"][-1]["content"]
        if GIVEN in prompt:
            return Reply(content=given_prompt(prompt) + " Answer in exactly three numbered steps, citing one source.")
        if "First instruction:" in prompt:
            return Reply(content="Not Equal")
        return Reply(content="Here is a careful answer, in plain words, with an example and a short summary.")

    server.script = script
    proc = run_cli(*_args(server, tmp_path / "same"))
    assert proc.returncode == 0, proc.stderr
    assert "the judge scripted-model also wrote the evolutions and the answers" in proc.stderr
    assert "--judge-model" in proc.stderr
    for name in ("records.jsonl", "rejected.jsonl"):
        for row in map(json.loads, (tmp_path / "same" / name).read_text().splitlines()):
            # judged rows name their judge; a seed's own row and an evolution cut before the judge name none
            assert row.get("judge_model") == ("scripted-model" if row.get("judge") else None), row
    judged = [
        r for r in map(json.loads, (tmp_path / "same" / "records.jsonl").read_text().splitlines()) if r.get("judge")
    ]
    assert judged
    apart = run_cli(*_args(server, tmp_path / "apart"), "--judge-model", "judge-7b")
    assert apart.returncode == 0, apart.stderr
    assert "also wrote" not in apart.stderr
    rows = [json.loads(x) for x in (tmp_path / "apart" / "records.jsonl").read_text().splitlines()]
    assert {r.get("judge_model") for r in rows if r.get("judge")} == {"judge-7b"}
