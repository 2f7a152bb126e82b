"""Preference pairs from ranked candidates (TRL's DPO and preference-chat columns), and the answer stage under a
budget stop and a kill -9: the same command goes on, paying for nothing twice. The runs and their scripted model
are test_answers.py's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from evol.testing.answer_script import AnswerScript, quality
from evol.testing.server import ScriptedServer

from ..conftest import ROOT, SEEDS, run_cli
from ..e2e.test_crash import LedgerServer, finish, kill_once_held
from ..output.test_export import hf_datasets
from .test_answers import FOUR, LIMIT, PRICES, run

# --- preference export


@pytest.mark.slow
def test_dpo_and_preference_chat_rows_have_trls_columns(tmp_path):
    with ScriptedServer(AnswerScript()) as srv:
        run(srv, tmp_path / "four", *FOUR)
    out = tmp_path / "dpo"
    r = run_cli("export", str(tmp_path / "four"), "--format", "dpo", "--out", str(out), "--min-margin", "5")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(x) for x in (out / "train.jsonl").read_text().splitlines()]
    assert len(rows) == LIMIT and all(set(x) == {"prompt", "chosen", "rejected"} for x in rows)
    assert all(quality(x["chosen"]) == 9 and quality(x["rejected"]) == 3 for x in rows)
    card = (out / "README.md").read_text()
    assert "## How the pairs were made" in card and "| 6 | 6 |" in card and "DPOTrainer" in card

    chat = tmp_path / "chat"
    r = run_cli(
        "export", str(tmp_path / "four"), "--format", "preference-chat", "--out", str(chat), "--system", "Be brief."
    )
    assert r.returncode == 0, r.stderr
    row = json.loads((chat / "train.jsonl").read_text().splitlines()[0])
    assert [m["role"] for m in row["prompt"]] == ["system", "user"]
    assert [m["role"] for m in row["chosen"]] == [m["role"] for m in row["rejected"]] == ["assistant"]

    narrow = run_cli(
        "export", str(tmp_path / "four"), "--format", "dpo", "--out", str(tmp_path / "none"), "--min-margin", "7"
    )
    assert (
        narrow.returncode != 0 and "No row has a preference pair" in narrow.stderr and "Traceback" not in narrow.stderr
    )
    bad = run_cli(
        "export", str(tmp_path / "four"), "--format", "dpo", "--out", str(tmp_path / "bad"), "--min-margin", "0"
    )
    assert bad.returncode != 0 and "--min-margin must be above 0" in bad.stderr

    datasets = hf_datasets()
    for folder in (out, chat):
        ds = datasets.load_dataset(str(folder), split="train", cache_dir=str(tmp_path / "cache"))
        assert set(ds.column_names) == {"prompt", "chosen", "rejected"} and len(ds) == LIMIT


@pytest.mark.slow
def test_a_run_of_plain_answers_has_no_pairs_to_export(tmp_path):
    with ScriptedServer(AnswerScript()) as srv:
        run(srv, tmp_path / "plain", "--response-model", "m-good")
    r = run_cli("export", str(tmp_path / "plain"), "--format", "dpo", "--out", str(tmp_path / "x"))
    assert r.returncode != 0 and "fewer than two ranked candidates" in r.stderr and "--answers 2" in r.stderr


@pytest.mark.slow
def test_response_models_named_twice_is_one_sentence(tmp_path):
    r = run_cli(
        "run",
        "--seeds",
        str(SEEDS),
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--response-model",
        "a",
        "--response-model",
        "a",
        "--out",
        str(tmp_path / "x"),
    )
    assert r.returncode != 0 and "response_models" in r.stderr and "names a model more than once" in r.stderr
    assert "Traceback" not in r.stderr


# --- budget and kill during the answer stage


@pytest.mark.slow
def test_the_budget_covers_the_answer_stages_and_the_same_command_goes_on(tmp_path):
    def keys(srv) -> list[str]:
        return [json.dumps(r, sort_keys=True) for r in srv.requests]

    with ScriptedServer(AnswerScript()) as srv:
        full = run(srv, tmp_path / "full", *FOUR, "--evolve-answers", "1")
        every = keys(srv)
    budget = f"{full['cost_usd']['total'] / 2:.6f}"
    with ScriptedServer(AnswerScript()) as srv:
        config = tmp_path / "b.toml"
        config.write_text(PRICES)
        common = (
            "run",
            "--config",
            str(config),
            "--seeds",
            str(SEEDS),
            "--limit",
            str(LIMIT),
            "--rounds",
            "1",
            "--base-url",
            srv.base_url,
            "--model",
            "m-evo",
            "--out",
            str(tmp_path / "b"),
            "--no-seeds",  # as run() leaves them out
            *FOUR,
            "--evolve-answers",
            "1",
        )
        stopped = run_cli(*common, "--budget-usd", budget)
        first = keys(srv)
        m = json.loads((tmp_path / "b" / "manifest.json").read_text())
        assert stopped.returncode == 6 and m["status"] == "budget_exhausted", stopped.stderr
        assert {"rank", "respond"} <= set(m["cost_usd"]["by_stage"]) and 0 < len(first) < len(every)
        resumed = run_cli(*common)
        assert resumed.returncode == 0, resumed.stderr
        second = keys(srv)[len(first) :]
    assert Counter(first) + Counter(second) == Counter(every)  # nothing paid twice
    assert all(any("Reply in exactly two lines" in k for k in part) for part in (first, second))  # ranked on both sides
    for name in ("dataset.json", "records.jsonl", "rejected.jsonl"):
        assert (tmp_path / "b" / name).read_bytes() == (tmp_path / "full" / name).read_bytes(), name


@pytest.mark.slow
def test_a_kill_during_the_answer_stage_resumes_paying_nothing_twice(tmp_path):
    """kill -9 with candidate, ranking and improvement calls answered and others in flight; the same command then
    sends none of the answered ones again and writes the bytes an uninterrupted run writes."""
    args = (
        "-m",
        "evol",
        "run",
        "--engine",
        "local",
        "--seeds",
        str(SEEDS),
        "--limit",
        "12",
        "--rounds",
        "1",
        "--model",
        "m-evo",
        "--response-model",
        "m-bad",
        "--response-model",
        "m-good",
        "--response-model",
        "m-mid",
        "--evolve-answers",
        "2",
        "--concurrency",
        "4",
    )

    def start(out: Path, url: str) -> subprocess.Popen:
        env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "EVOL_API_KEY")}
        return subprocess.Popen(
            [sys.executable, *args, "--base-url", url, "--out", str(out)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
        )

    with LedgerServer(AnswerScript()) as srv:
        code, _, err = finish(start(tmp_path / "full", srv.base_url))
        assert code == 0, err
        _, every = srv.snapshot()
    answer_stage = ("Reply in exactly two lines", "Current answer:")
    with LedgerServer(AnswerScript(), hold_after=len(every) // 2) as srv:
        kill_once_held(srv, start(tmp_path / "killed", srv.base_url), tmp_path / "killed")
        answered_before, sent_before = srv.snapshot()
        in_flight = list(srv.held)
        srv.phase = "resume"
        code, _, err = finish(start(tmp_path / "killed", srv.base_url))
        assert code == 0, err
        sent_after = srv.snapshot()[1][len(sent_before) :]
    assert any(any(m in k for m in answer_stage) for k in answered_before), "no ranking or improvement was answered"
    assert any(any(m in k for m in answer_stage) for k in in_flight), "no answer-stage call was in flight"
    before, after, one_run = Counter(answered_before), Counter(sent_after), Counter(every)
    assert before + after == one_run, f"paid twice: {sum((before + after - one_run).values())}"
    for name in ("dataset.json", "records.jsonl", "rejected.jsonl"):
        assert (tmp_path / "killed" / name).read_bytes() == (tmp_path / "full" / name).read_bytes(), name
