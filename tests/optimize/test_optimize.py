"""``evol optimize`` against a scripted evolver and optimizer over real HTTP (tests/autoscript.py)."""

from __future__ import annotations

import asyncio
import html
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from evol.optimize.optimizer import candidate_text, load_report
from evol.prompts import load_profile
from evol.testing.server import ScriptedServer

from ..autoscript import GAIN, QUIET, AutoScript, fate, final_for
from ..conftest import ROOT, run_cli

SEEDS = [f"Describe how tide pools form on rocky coast number {i}." for i in range(40)]


def optimize_cmd(tmp_path, url, *extra):
    return (
        "optimize",
        "--seeds",
        str(tmp_path / "seeds.txt"),
        "--out",
        str(tmp_path / "opt"),
        "--base-url",
        url,
        "--steps",
        "5",
        "--dev-size",
        "20",
        *extra,
    )


@pytest.fixture(scope="module")
def optimized(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("optimize")
    (tmp_path / "seeds.txt").write_text("\n".join(SEEDS) + "\n")
    script = AutoScript()
    with ScriptedServer(script) as srv:
        first = run_cli(*optimize_cmd(tmp_path, srv.base_url))
        paid = srv.calls["chat"]
        second = run_cli(*optimize_cmd(tmp_path, srv.base_url))
        assert first.returncode == 0, first.stderr
        assert second.returncode == 0, second.stderr
        yield tmp_path, srv, paid, first, second


@pytest.mark.slow
def test_keeps_the_lowest_failure_rate_and_stops_when_it_stops_improving(optimized):
    tmp_path, *_ = optimized
    report = load_report(tmp_path / "opt" / "optimize.json")
    assert report.status == "complete"
    start = report.start.evaluation.failure_rate
    rates = [s.best_failure_rate for s in report.steps]
    # the starting method fails often; each step keeps its best candidate; step 3 finds nothing better and stops
    assert start > 0.5 and rates == sorted(rates, reverse=True) and rates[-1] == 0.0 and rates[0] < start
    assert len(report.steps) == 3 and not report.steps[-1].improved and "no candidate beat" in report.reason
    for step in report.steps:
        valid = [c for c in step.candidates if c.valid]
        kept = [c for c in step.candidates if c.kept]
        if step.improved:
            assert kept == [min(valid, key=lambda c: (c.evaluation.failure_rate, c.index))]
            assert kept[0].evaluation.failure_rate == step.best_failure_rate
        else:
            assert not kept and all(c.evaluation.failure_rate >= step.best_failure_rate for c in valid)
    assert GAIN in report.best_method and QUIET in report.best_method
    # the dev failures are counted by the pipeline's own rules
    assert set(report.start.evaluation.by_rule) == {"no_information_gain", "prompt_leak"}
    method = load_profile("auto").operations[0].prompt.text
    expected = sum(fate(s, method) != "ok" for s in SEEDS[-20:]) / 20
    assert start == expected


@pytest.mark.slow
def test_the_general_profile_is_measured_on_the_same_dev_set(optimized):
    tmp_path, _, _, first, _ = optimized
    report = load_report(tmp_path / "opt" / "optimize.json")
    base = report.baseline
    assert base is not None and base.profile == "general" and base.evaluation.attempts == 20
    # the scripted model follows no method under the general profile: its failures are those of a bare method
    assert base.evaluation.failure_rate == sum(fate(s, "") != "ok" for s in SEEDS[-20:]) / 20
    assert report.best_failure_rate < base.evaluation.failure_rate
    assert json.loads(first.stdout)["baseline_failure_rate"] == base.evaluation.failure_rate


@pytest.mark.slow
def test_the_report_compares_the_steps_the_start_and_the_baseline(optimized, tmp_path):
    opt_dir, *_ = optimized
    report = load_report(opt_dir / "opt" / "optimize.json")
    proc = run_cli("report", str(opt_dir / "opt"), "--out", str(tmp_path / "page"))
    assert proc.returncode == 0, proc.stderr
    page = (tmp_path / "page" / "report.html").read_text()
    png = (tmp_path / "page" / "failure_rate_by_step.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    for name, rate in (
        ("starting method", report.start.evaluation.failure_rate),
        ("final method", report.best_failure_rate),
        ("profile general", report.baseline.evaluation.failure_rate),
    ):
        assert f"data-metric='{name}'>{rate:.3f}<" in page
    assert page.count("<h3>Step ") == len(report.steps) and "invalid: " in page
    assert html.escape(report.best_method.splitlines()[0]) in page


@pytest.mark.slow
def test_an_invalid_candidate_is_recorded_and_never_used(optimized):
    tmp_path, *_ = optimized
    report = load_report(tmp_path / "opt" / "optimize.json")
    for step in report.steps:
        bad = [c for c in step.candidates if not c.valid]
        assert len(bad) == 1 and "${topic}" in bad[0].reason and bad[0].evaluation is None and not bad[0].kept
    assert "${topic}" not in report.best_method


@pytest.mark.slow
def test_a_second_run_pays_for_nothing_and_decides_the_same(optimized):
    tmp_path, srv, paid, first, second = optimized
    assert srv.calls["chat"] == paid  # every call of the second run came from DIR/calls.sqlite
    assert first.stdout == second.stdout
    # optimize.json's books are the second run's: every call it made (the first made as many, some answered
    # from its own cache: a method met twice is not paid twice), all of them from the cache
    usage = load_report(tmp_path / "opt" / "optimize.json").usage
    calls = sum(usage["calls"].values())
    assert calls >= paid and calls == sum(usage["calls_from_cache"].values())
    assert set(usage["calls"]) == {"evolve", "judge", "respond", "optimize"}
    assert f"{calls} calls ({calls} from the cache)" in second.stderr
    assert f"{calls} calls ({calls - paid} from the cache)" in first.stderr


@pytest.mark.slow
def test_the_optimized_profile_drives_a_normal_run(optimized, tmp_path):
    opt_dir, _srv, *_ = optimized
    prompts = opt_dir / "opt" / "prompts"
    assert (prompts / "judge.txt").is_file() and (prompts / "auto" / "profile.toml").is_file()
    method = (prompts / "auto" / "evolve.txt").read_text()
    assert method == load_report(opt_dir / "opt" / "optimize.json").best_method
    dev = tmp_path / "dev.txt"
    dev.write_text("\n".join(SEEDS[-20:]) + "\n")
    with ScriptedServer(AutoScript()) as server:
        proc = run_cli(
            "run",
            "--seeds",
            str(dev),
            "--prompts-dir",
            str(prompts),
            "--profile",
            "auto",
            "--rounds",
            "1",
            "--out",
            str(tmp_path / "run"),
            "--base-url",
            server.base_url,
        )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads((tmp_path / "run" / "dataset.json").read_text())
    assert [r["instruction"] for r in rows] == [final_for(s, method) for s in SEEDS[-20:]]


@pytest.mark.slow
def test_the_default_prefect_engine_decides_as_the_local_one(optimized, tmp_path):
    """``evol optimize`` without --engine: a Prefect flow on a temporary server, each stage a task run, and
    the same optimize.json and profile as the local engine's."""
    pytest.importorskip("prefect")
    local_dir, *_ = optimized
    (tmp_path / "seeds.txt").write_text("\n".join(SEEDS) + "\n")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PREFECT_") and k not in ("EVOL_ENGINE", "EVOL_API_KEY", "OPENAI_API_KEY")
    }
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    with ScriptedServer(AutoScript()) as srv:
        proc = subprocess.run(
            [sys.executable, "-m", "evol", *optimize_cmd(tmp_path, srv.base_url)],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "evol-optimize" in proc.stderr, proc.stderr[-3000:]
    with sqlite3.connect(tmp_path / "prefect-home" / "prefect.db") as db:  # what the Prefect UI would list
        tasks = {name for (name,) in db.execute("select name from task_run")}
    assert {
        "evaluate-start",
        "evaluate-baseline-general",
        "trajectories-step-1",
        "analyze-step-1",
        "candidate-step-1-1",
        "candidate-step-3-3",
    } <= tasks, tasks
    ours_report, theirs_report = (
        load_report(tmp_path / "opt" / "optimize.json"),
        load_report(local_dir / "opt" / "optimize.json"),
    )
    books = {"usage", "cost_usd"}  # the local folder's are its second run's, answered from the cache
    assert ours_report.model_dump(exclude=books) == theirs_report.model_dump(exclude=books)
    assert ours_report.usage["calls"] == theirs_report.usage["calls"]
    ours, theirs = tmp_path / "opt" / "prompts", local_dir / "opt" / "prompts"
    assert sorted(p.relative_to(ours) for p in ours.rglob("*")) == sorted(
        p.relative_to(theirs) for p in theirs.rglob("*")
    )
    assert (ours / "auto" / "evolve.txt").read_text() == (theirs / "auto" / "evolve.txt").read_text()


@pytest.mark.slow
def test_killed_mid_way_resumes_without_paying_twice(tmp_path):
    (tmp_path / "seeds.txt").write_text("\n".join(SEEDS) + "\n")
    script = AutoScript()
    sent: list[str] = []  # the messages of every answer the server sent back, in order

    async def slow(request):
        await asyncio.sleep(0.02)
        reply = script(request)
        sent.append(json.dumps(request["messages"], sort_keys=True))
        return reply

    with ScriptedServer(slow) as srv:
        env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "EVOL_API_KEY")}
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "evol",
                *optimize_cmd(tmp_path, srv.base_url, "--concurrency", "2"),
                "--engine",
                "local",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        deadline = time.time() + 60
        while script.kinds.get("propose", 0) < 2 and time.time() < deadline:  # part-way through step 1
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        before = list(sent)
        assert script.kinds.get("propose", 0) >= 2
        again = run_cli(*optimize_cmd(tmp_path, srv.base_url, "--concurrency", "2"))
        assert again.returncode == 0, again.stderr
    # an answer already sent is asked for again only if the kill came between its arrival and its commit
    assert len(set(sent[len(before) :]) & set(before)) <= 2
    assert load_report(tmp_path / "opt" / "optimize.json").best_failure_rate == 0.0


@pytest.mark.parametrize(
    "args,words",
    [
        (("--dev-size", "40"), "leaves none for the mini-batches"),
        (("--steps", "0"), "steps"),
        (("--profile", "general"), "exactly one operation that has an extract marker"),
        (("--batch",), "does not take --batch"),
        (("--baseline-profile", "nope"), "--baseline-profile: Unknown profile 'nope'"),
    ],
)
@pytest.mark.slow
def test_bad_input_is_one_sentence(tmp_path, args, words):
    (tmp_path / "seeds.txt").write_text("\n".join(SEEDS) + "\n")
    proc = run_cli(
        "optimize",
        "--seeds",
        str(tmp_path / "seeds.txt"),
        "--out",
        str(tmp_path / "o"),
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--model",
        "m",
        *args,
    )
    assert proc.returncode == 2 or proc.returncode == 3, proc.stderr
    assert words in proc.stderr and "Traceback" not in proc.stderr


def test_candidate_text_takes_the_method_after_its_heading():
    assert candidate_text("Thoughts.\n#New Method#\n```\nDo ${instruction}\n```\n") == "Do ${instruction}\n"
    assert candidate_text("no heading here") is None
