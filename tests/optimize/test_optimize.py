"""``evol optimize`` against a scripted evolver and optimizer over real HTTP (evol/testing/auto_script.py)."""

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
from collections import Counter

import pytest

from evol.optimize.optimizer import candidate_text, load_report
from evol.prompts import load_profile
from evol.rules.clarifications import clarification
from evol.seeds import load_seeds
from evol.testing.auto_script import (
    ASKS_FOR_AUDIENCE,
    ASKS_FOR_TABLE,
    GAIN,
    KEEP,
    QUIET,
    TIMID,
    AutoScript,
    answer_for,
    fate,
    final_for,
    refused,
)
from evol.testing.server import Reply, ScriptedServer, last_user

from ..conftest import ROOT, run_cli
from ..realistic import SHIPPED

# the shipped seed tasks' instructions: varied enough that a timid rewrite of one is no near copy of another's
SEEDS = [s.instruction for s in load_seeds(SHIPPED).seeds][:90]
DEV = SEEDS[-50:]  # --dev-size's default
FLOOR = sum(map(refused, DEV)) / 50  # refused whatever the method: the failure rate no method goes below
CANDIDATES = 4  # the scripted optimizer's variants: GAIN (then KEEP), QUIET (then KEEP), timid, invalid


def write_seeds(tmp_path) -> None:
    (tmp_path / "seeds.jsonl").write_text("".join(json.dumps({"instruction": s}) + "\n" for s in SEEDS))


def optimize_cmd(tmp_path, url, *extra):
    return (
        "optimize",
        "--seeds",
        str(tmp_path / "seeds.jsonl"),
        "--out",
        str(tmp_path / "opt"),
        "--base-url",
        url,
        "--steps",
        "6",
        "--candidates",
        str(CANDIDATES),
        *extra,
    )


@pytest.fixture(scope="module")
def optimized(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("optimize")
    write_seeds(tmp_path)
    script = AutoScript()
    with ScriptedServer(script) as srv:
        first = run_cli(*optimize_cmd(tmp_path, srv.base_url))
        paid = srv.calls["chat"]
        second = run_cli(*optimize_cmd(tmp_path, srv.base_url))
        assert first.returncode == 0, first.stderr
        assert second.returncode == 0, second.stderr
        yield tmp_path, srv, paid, first, second, script


def failed(seed: str, method: str) -> bool:
    """Whether the pipeline eliminates ``seed`` evolved with ``method``: an answer that asks back is caught unless
    the clarification rule's exemptions spare it (an instruction that asks for a message, or for questions)."""
    kind = fate(seed, method)
    if kind in ("insufficient_qualification", "loss_of_key_information"):
        final = final_for(seed, method)
        return clarification(answer_for(final), final) is not None
    return kind not in ("ok", "timid")


def failures_of(method: str, kind: str | None = None) -> int:
    return sum(failed(s, method) and kind in (None, fate(s, method)) for s in DEV)


@pytest.mark.slow
def test_keeps_the_lowest_failure_rate_and_stops_after_its_patience(optimized):
    tmp_path, *_ = optimized
    report = load_report(tmp_path / "opt" / "optimize.json")
    assert report.status == "complete"
    start = report.start.evaluation.failure_rate
    rates = [s.best_failure_rate for s in report.steps]
    # each step keeps its best candidate; steps 4 and 5 find nothing better and, patience 2, it stops there
    assert start > 0.5 and rates == sorted(rates, reverse=True) and rates[-1] == FLOOR > 0 and rates[0] < start
    assert [s.improved for s in report.steps] == [True, True, True, False, False]
    assert "2 steps in a row (patience 2)" in report.reason
    for step in report.steps:
        valid = [c for c in step.candidates if c.valid]
        running = [c for c in valid if c.evaluation.complexity >= step.min_complexity]
        kept = [c for c in step.candidates if c.kept]
        if step.improved:
            best = min(running, key=lambda c: (c.evaluation.failure_rate, -c.evaluation.complexity, c.index))
            assert kept == [best] and kept[0].evaluation.failure_rate == step.best_failure_rate
            assert step.why.startswith(f"candidate {best.index} ") and kept[0].why.startswith("kept: ")
        else:
            assert not kept and all(c.evaluation.failure_rate >= step.best_failure_rate for c in running)
        for c in valid:  # every measured candidate's rate is the scripted model's fate of the dev seeds
            assert c.evaluation.failures == failures_of(c.method) and c.evaluation.attempts == 50
    assert GAIN in report.best_method and QUIET in report.best_method and KEEP in report.best_method
    # the dev failures are counted by the pipeline's own rules, and under the paper's kinds
    method = load_profile("auto").operations[0].prompt.text
    first = report.start.evaluation
    assert set(first.by_rule) == {
        "no_information_gain",
        "prompt_leak",
        "clarification_response",
        "no_final_instruction",
    }
    assert first.failures == failures_of(method) and start == failures_of(method) / 50
    assert first.by_kind == {
        "stagnant_complexity": failures_of(method, "no_information_gain"),
        "insufficient_qualification": failures_of(method, "insufficient_qualification"),
        "loss_of_key_information": failures_of(method, "loss_of_key_information"),
        "evol_rules": failures_of(method, "prompt_leak") + failures_of(method, "refused"),
    }
    assert all(n > 0 for n in first.by_kind.values()) and sum(first.by_kind.values()) == first.failures
    assert first.rate_by_kind["stagnant_complexity"] == first.by_kind["stagnant_complexity"] / 50


@pytest.mark.slow
def test_a_timid_method_that_fails_least_is_never_kept(optimized):
    """The timid candidate fails at nothing, so the lowest failure rate alone would pick it; its evolutions draw
    answers no longer than their seeds', so its complexity falls below the floor and it loses every step."""
    tmp_path, *_ = optimized
    report = load_report(tmp_path / "opt" / "optimize.json")
    start = report.start.evaluation.complexity
    assert start is not None and start > 1.5  # a genuine requirement makes the answer longer than the seed's
    peak = start
    for step in report.steps:
        timid = next(c for c in step.candidates if c.valid and TIMID in c.method)
        assert timid.evaluation.failure_rate == FLOOR and timid.evaluation.complexity < 1.1
        assert not timid.kept and "below the floor" in timid.why
        # the floor: the most complex method kept so far, less --complexity-tolerance's default 5 %
        assert step.min_complexity == round(peak * 0.95, 6)
        if step.improved:
            peak = max(peak, step.best_complexity)
    assert report.steps[0].best_failure_rate > FLOOR  # step 1 kept an honest method over the timid one
    assert TIMID not in report.best_method and report.best_complexity >= start * 0.95


@pytest.mark.slow
def test_each_candidate_is_written_from_its_own_analysis(optimized):
    tmp_path, *_, script = optimized
    report = load_report(tmp_path / "opt" / "optimize.json")
    # one analysis call per candidate and step (the second run asked none: all from the cache)
    assert script.kinds["analyze"] == script.kinds["propose"] == CANDIDATES * len(report.steps)
    for step in report.steps:
        assert all(c.analysis.startswith("Failures seen: ") for c in step.candidates)


@pytest.mark.slow
def test_the_general_profile_is_measured_on_the_same_dev_set(optimized):
    tmp_path, _, _, first, *_ = optimized
    report = load_report(tmp_path / "opt" / "optimize.json")
    base = report.baseline
    assert base is not None and base.profile == "general" and base.evaluation.attempts == 50
    # the scripted model follows no method under the general profile: its failures are those of a bare method
    assert base.evaluation.failure_rate == failures_of("") / 50
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
    start = report.start.evaluation
    assert f"data-complexity='starting method'>{start.complexity:.3f}<" in page
    assert "loss_of_key_information" in page and "below the floor" in page
    assert page.count("the optimizer's analysis</summary>") == sum(len(s.candidates) for s in report.steps)
    assert html.escape(report.best_method.splitlines()[0]) in page


@pytest.mark.slow
def test_an_invalid_candidate_is_recorded_and_never_used(optimized):
    tmp_path, *_ = optimized
    report = load_report(tmp_path / "opt" / "optimize.json")
    for step in report.steps:
        bad = [c for c in step.candidates if not c.valid]
        assert len(bad) == 1 and "${topic}" in bad[0].reason and bad[0].evaluation is None and not bad[0].kept
        assert bad[0].why == f"invalid: {bad[0].reason}"
    assert "${topic}" not in report.best_method


@pytest.mark.slow
def test_a_second_run_pays_for_nothing_and_decides_the_same(optimized):
    tmp_path, srv, paid, first, second, _ = optimized
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
    dev = tmp_path / "dev.jsonl"
    dev.write_text("".join(json.dumps({"instruction": s}) + "\n" for s in DEV))
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
    records = [json.loads(line) for line in (tmp_path / "run" / "records.jsonl").read_text().splitlines()]
    evolved = [r["instruction"] for r in records if r["round"] > 0]  # round 0: the seeds themselves
    assert evolved == [final_for(s, method) for s in DEV if fate(s, method) == "ok"]


@pytest.mark.slow
def test_the_default_prefect_engine_decides_as_the_local_one(optimized, tmp_path):
    """``evol optimize`` without --engine: a Prefect flow on a temporary server, each stage a task run, and
    the same optimize.json and profile as the local engine's."""
    pytest.importorskip("prefect")
    local_dir, *_ = optimized
    write_seeds(tmp_path)
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
        "answer-dev-seeds",
        "evaluate-start",
        "evaluate-baseline-general",
        "trajectories-step-1",
        "candidate-step-1-1",
        "candidate-step-5-4",
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


def _recording(script, sent: list[str]):
    """The script, slowed so a run can be killed part-way, recording each request it answered (its whole body:
    two calls with the same messages but another max_tokens, a judge's second ask, are two calls)."""

    async def slow(request):
        await asyncio.sleep(0.02)
        reply = script(request)
        sent.append(json.dumps(request, sort_keys=True))
        return reply

    return slow


@pytest.mark.slow
def test_killed_mid_way_resumes_without_paying_twice(tmp_path):
    write_seeds(tmp_path)
    (tmp_path / "whole").mkdir()
    write_seeds(tmp_path / "whole")
    every: list[str] = []  # what the same command makes, never killed, into its own folder
    with ScriptedServer(_recording(AutoScript(), every)) as srv:
        whole = run_cli(*optimize_cmd(tmp_path / "whole", srv.base_url, "--concurrency", "2"))
        assert whole.returncode == 0, whole.stderr
    script = AutoScript()
    sent: list[str] = []  # every request the server answered, in order
    with ScriptedServer(_recording(script, sent)) as srv:
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
        before = len(sent)
        assert script.kinds.get("propose", 0) >= 2 and 0 < before < len(every)  # killed part-way
        again = run_cli(*optimize_cmd(tmp_path, srv.base_url, "--concurrency", "2"))
        assert again.returncode == 0, again.stderr
    # as multisets: the same request may rightly be made twice (repeated samples of one prompt send the same body)
    made, one_run = Counter(sent), Counter(every)
    assert not one_run - made  # every call of an uninterrupted run was made
    # and beyond it only answers asked again because the kill came between their arrival and their commit: at most
    # the two in flight (--concurrency 2), each once
    assert sum((made - one_run).values()) <= 2, made - one_run
    assert load_report(tmp_path / "opt" / "optimize.json").best_failure_rate == FLOOR


@pytest.mark.parametrize(
    "args,words",
    [
        (("--dev-size", "90"), "leaves none for the mini-batches"),
        (("--steps", "0"), "steps"),
        (("--patience", "0"), "patience"),
        (("--dev-samples", "0"), "dev_samples"),
        (("--complexity-tolerance", "1.5"), "complexity_tolerance"),
        (("--profile", "general"), "exactly one operation that has an extract marker"),
        (("--batch",), "does not take --batch"),
        (("--baseline-profile", "nope"), "--baseline-profile: Unknown profile 'nope'"),
    ],
)
@pytest.mark.slow
def test_bad_input_is_one_sentence(tmp_path, args, words):
    write_seeds(tmp_path)
    proc = run_cli(
        "optimize",
        "--seeds",
        str(tmp_path / "seeds.jsonl"),
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


class CutOptimizer(AutoScript):
    """The optimizer's variant 1 is cut at max_tokens unless asked with more room; variant 2 is cut every time."""

    def __call__(self, request: dict) -> Reply:
        reply = super().__call__(request)
        prompt = last_user(request)
        if "#New Method#" in prompt and "<<<METHOD\n" in prompt:
            roomy = request["max_tokens"] > 2048
            if "variant 2 of" in prompt or ("variant 1 of" in prompt and not roomy):
                text = reply.content or ""
                return Reply(content=text[: len(text) // 2], finish_reason="length")
        return reply


@pytest.mark.slow
def test_a_cut_optimizer_answer_is_asked_again_with_more_room_then_recorded(tmp_path):
    write_seeds(tmp_path)
    with ScriptedServer(CutOptimizer()) as srv:
        proc = run_cli(*optimize_cmd(tmp_path, srv.base_url, "--steps", "1", "--candidates", "2"))
        assert proc.returncode == 0, proc.stderr
        proposals = [r for r in srv.requests if "#New Method#" in last_user(r)]
    # each variant asked twice: at max_tokens, then at twice it
    assert sorted(r["max_tokens"] for r in proposals) == [2048, 2048, 4096, 4096]
    first, second = load_report(tmp_path / "opt" / "optimize.json").steps[0].candidates
    assert first.valid and first.evaluation is not None and GAIN in first.method  # the retry's whole method
    assert not second.valid and second.evaluation is None and second.method == ""
    assert "the new method was cut at max_tokens, also when asked again" in second.reason


class DropsTheForbiddenWords(AutoScript):
    """The optimizer's only variant drops the method's "never use the words …" sentence; an evolution asked with a
    method that no longer forbids them writes "the original instruction" into its final instruction."""

    def __call__(self, request: dict) -> Reply:
        prompt = last_user(request)
        if "#New Method#" in prompt and "<<<METHOD\n" in prompt:
            method = prompt.split("<<<METHOD\n", 1)[1].split("\nMETHOD>>>", 1)[0]
            start, end = method.index(", and never use the words"), method.index("in it.") + len("in it.")
            return Reply(content=f"#New Method#\n{method[:start]}.{method[end:]}")
        if "\n<<<\n" in prompt and "never use the words" not in prompt:
            instruction = prompt.split("\n<<<\n", 1)[1].split("\n>>>", 1)[0]
            final = f"{instruction} Keep the tone of the original instruction and add one worked example."
            return Reply(content=f"#Plan#\nAdd a demand.\n\n#Final Instruction#\n{final}")
        return super().__call__(request)


@pytest.mark.slow
def test_the_leak_checks_are_frozen_from_the_starting_method(tmp_path):
    write_seeds(tmp_path)
    with ScriptedServer(DropsTheForbiddenWords()) as srv:
        proc = run_cli(*optimize_cmd(tmp_path, srv.base_url, "--steps", "1", "--candidates", "1"))
        assert proc.returncode == 0, proc.stderr
    report = load_report(tmp_path / "opt" / "optimize.json")
    (cand,) = report.steps[0].candidates
    assert cand.valid and "never use the words" not in cand.method
    assert "original instruction" in report.leak_phrases
    # checked against the starting method's phrases, every one of its evolutions leaks
    assert cand.evaluation.by_rule == {"prompt_leak": 50} and not cand.kept


@pytest.mark.slow
def test_the_optimized_method_fails_less_on_held_out_seeds(optimized, tmp_path):
    """The seeds the optimizer never saw, each evolved once by ``evol run`` with the starting and the optimized
    method: the optimized one fails at least 30 % less often, keeps no answer that asks back, and its answers are
    no shorter (the complexity figure's numerator: the seeds are the same)."""
    opt_dir, *_ = optimized
    held = [s.instruction for s in load_seeds(SHIPPED).seeds][90:]
    (tmp_path / "held.jsonl").write_text("".join(json.dumps({"instruction": s}) + "\n" for s in held))
    results = {}
    with ScriptedServer(AutoScript()) as srv:
        for name, extra in (("start", ()), ("optimized", ("--prompts-dir", str(opt_dir / "opt" / "prompts")))):
            out = tmp_path / name
            proc = run_cli(
                "run",
                "--seeds",
                str(tmp_path / "held.jsonl"),
                "--profile",
                "auto",
                "--rounds",
                "1",
                "--out",
                str(out),
                "--base-url",
                srv.base_url,
                *extra,
            )
            assert proc.returncode == 0, proc.stderr
            rows = json.loads((out / "dataset.json").read_text())
            rejected = [json.loads(x) for x in (out / "rejected.jsonl").read_text().splitlines()]
            lost = [r for r in rejected if r["kind"] != "failed"]
            results[name] = (len(lost) / len(held), rows)
    (start_rate, start_rows), (best_rate, best_rows) = results["start"], results["optimized"]
    assert start_rate > 0.5 and best_rate <= 0.7 * start_rate
    assert not any(clarification(r["output"], r["instruction"]) for r in best_rows)
    assert not any(r["output"] in (ASKS_FOR_TABLE, ASKS_FOR_AUDIENCE) for r in best_rows)

    def mean_words(rows):
        return sum(len(r["output"].split()) for r in rows) / len(rows)

    assert mean_words(best_rows) >= mean_words(start_rows)


@pytest.mark.slow
def test_repeated_dev_samples_make_a_small_dev_set_count_for_more(tmp_path):
    write_seeds(tmp_path)
    with ScriptedServer(AutoScript()) as srv:
        small = run_cli(*optimize_cmd(tmp_path, srv.base_url, "--steps", "1", "--candidates", "1", "--dev-size", "20"))
        assert small.returncode == 0, small.stderr
        assert "20 development items, so one item moves the failure rate by 5.0 points" in small.stderr
        (tmp_path / "opt").rename(tmp_path / "small")
        evolved = {r["messages"][-1]["content"] for r in srv.requests}
        twice = run_cli(
            *optimize_cmd(tmp_path, srv.base_url, "--steps", "1", "--candidates", "1", "--dev-size", "20"),
            "--dev-samples",
            "3",
        )
        assert twice.returncode == 0, twice.stderr
        assert "one item moves" not in twice.stderr  # 60 items
    report = load_report(tmp_path / "opt" / "optimize.json")
    one = load_report(tmp_path / "small" / "optimize.json")
    assert report.dev_samples == 3 and report.start.evaluation.attempts == 60
    # the scripted model answers a prompt the same way every time: each sample fails as the first did, and two
    # samples of one seed are not counted as duplicates of each other
    assert report.start.evaluation.failures == 3 * one.start.evaluation.failures
    assert len(evolved) < len({r["messages"][-1]["content"] for r in srv.requests})
