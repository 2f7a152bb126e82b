"""Several candidate answers, the ranking judge, answer evolution and preference export (issue #18).

Runs are real ``python -m evol run`` subprocesses against the scripted server, whose answers carry planted
quality (evol/testing/answer_script.py), so which candidate must win is known in advance. Preference export and the
answer stage under a budget stop or a kill are in test_answers_pairs.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from evol.config import RunConfig
from evol.evolve.run import run_id_for
from evol.models import Record
from evol.prompts import default_prompts_dir
from evol.quality.score_reader import parse_rank
from evol.testing.answer_script import AnswerScript, quality
from evol.testing.server import ScriptedServer

from ..conftest import SEEDS, run_cli

LIMIT = 6
PRICES = """
[prices]
m-evo = { input = 1.0, output = 2.0 }
m-good = { input = 3.0, output = 15.0 }
m-mid = { input = 1.0, output = 4.0 }
m-bad = { input = 0.5, output = 1.0 }
m-refuse = { input = 0.5, output = 1.0 }
"""
FOUR = (
    "--response-model",
    "m-bad",
    "--response-model",
    "m-good",
    "--response-model",
    "m-mid",
    "--response-model",
    "m-refuse",
)


def run(srv, out: Path, *extra: str, toml: str = "", engine: str = "local") -> dict:
    config = out.parent / f"{out.name}.toml"
    config.write_text(toml + PRICES)
    r = run_cli(
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
        str(out),
        # the answer stage of evolutions is under test; the seeds (in the dataset by default) bring their own
        # outputs from the seed file, so they would add rows without candidates
        "--no-seeds",
        *extra,
        engine=engine,
    )
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    return json.loads((out / "manifest.json").read_text())


def records(out: Path) -> list[Record]:
    return [Record.model_validate_json(line) for line in (out / "records.jsonl").read_text().splitlines()]


# --- the ranking judge's answers, as models write them


@pytest.mark.parametrize(
    "answer, score",
    [
        ("Reason: clear and correct.\nScore: 8", 8),
        ("Score: 7", 7),
        ("**Score:** 8/10", 8),
        ("Score: **9**", 9),
        ("score: 6\nreason: misses one constraint", 6),
        ("Rating: 5 out of 10", 5),
        ("Final score: 9.", 9),
        ("7", 7),
        ("7/10", 7),
        ("I would rate this answer 6/10 overall.", 6),
        ("Score:\n4", 4),
        ("<think>\nIt might be a 3. Score: 3? No.\n</think>\n\nReason: thorough.\nScore: 8", 8),
        ("Working it through.\n</think>\nScore: 2", 2),  # the template opened the block
        ("Score: 7\n\nOn reflection the answer skips a step.\nScore: 6", 6),  # the last one is the verdict
        # no readable score: never a default
        ("<think>\nLet me weigh each part of this answer. Score: 8 so far", None),  # cut off inside the block
        ("Reason: the answer covers the main", None),
        ("Score: 11", None),
        ("Score: 0", None),
        ("", None),
        ("I cannot grade this answer.", None),
        ("Scores vary between graders.", None),
    ],
)
def test_the_score_is_read_from_realistic_judge_answers(answer, score):
    assert parse_rank(answer)[0] == score


def test_the_reason_is_kept_short_and_without_the_score():
    assert parse_rank("**Reason:** covers every constraint.\n**Score:** 9")[1] == "covers every constraint."
    assert parse_rank("Score: 7")[1] == ""


# --- defaults: nothing changes


@pytest.mark.slow
def test_default_options_keep_the_run_id_and_add_no_judge_call(tmp_path):
    base = RunConfig(seeds=SEEDS, base_url="http://127.0.0.1:9/v1")
    assert run_id_for(base) == run_id_for(
        RunConfig(seeds=SEEDS, base_url="http://127.0.0.1:9/v1", answers=1, evolve_answers=0, response_models=[])
    )
    assert run_id_for(base) != run_id_for(base.model_copy(update={"answers": 2}))
    script = AnswerScript()
    with ScriptedServer(script) as srv:
        m = run(srv, tmp_path / "plain", "--response-model", "m-good")
    assert script.counts["rank"] == script.counts["evolve_answer"] == 0
    assert m["usage"]["calls"]["respond"] == LIMIT and "answers" not in m
    raw = (tmp_path / "plain" / "records.jsonl").read_text()
    assert '"candidates"' not in raw  # records.jsonl reads as before candidates existed


# --- candidates and ranking


@pytest.mark.slow
def test_the_best_scored_candidate_becomes_the_output_and_every_candidate_is_kept(tmp_path):
    script = AnswerScript()
    with ScriptedServer(script) as srv:
        m = run(srv, tmp_path / "four", *FOUR)
    recs = records(tmp_path / "four")
    assert len(recs) == LIMIT
    for rec in recs:
        assert quality(rec.output) == 9 and rec.response_model == "m-good"
        by_model = {c.model: c for c in rec.candidates}
        assert set(by_model) == {"m-bad", "m-good", "m-mid", "m-refuse"}
        assert [c.best for c in rec.candidates].count(True) == 1 and by_model["m-good"].best
        assert {m_: c.score for m_, c in by_model.items()} == {"m-bad": 3, "m-good": 9, "m-mid": 6, "m-refuse": None}
        refused = by_model["m-refuse"]
        assert refused.rule == "sorry_short_response" and refused.ranking is None and not refused.rank_answers
        assert all(c.origin == "model" and c.ranking == "scored" and c.reason for c in rec.candidates if c.rule is None)
        assert set(rec.usage) == {"evolve", "judge", "respond", "rank"}
    # the refusal is never sent to the judge; an answer cut off mid-thought is asked once more
    retried = sum(len(c.rank_answers) == 2 for rec in recs for c in rec.candidates)
    assert script.counts["rank"] == 3 * LIMIT + retried and retried > 0
    assert m["usage"]["calls"] == {"evolve": LIMIT, "judge": LIMIT, "respond": 4 * LIMIT, "rank": 3 * LIMIT + retried}
    by_stage = m["cost_usd"]["by_stage"]
    assert set(by_stage) == {"evolve", "judge", "respond", "rank"} and all(v > 0 for v in by_stage.values())
    assert sum(by_stage.values()) == pytest.approx(m["cost_usd"]["total"], abs=1e-5)
    assert m["backend"]["response_models"] == ["m-bad", "m-good", "m-mid", "m-refuse"]
    assert m["answers"]["candidates"] == 4 and "answers/rank" in m["prompt_sha256"]


@pytest.mark.slow
def test_samples_of_one_model_each_have_their_own_call(tmp_path):
    script = AnswerScript()
    with ScriptedServer(script) as srv:
        m = run(srv, tmp_path / "sampled", "--answers", "4")
    for rec in records(tmp_path / "sampled"):
        assert [c.key for c in rec.candidates] == ["0", "1", "2", "3"]
        assert sorted(quality(c.text) for c in rec.candidates) == [3, 5, 6, 8]
        assert quality(rec.output) == 8 and all(c.origin == "sample" for c in rec.candidates)
    assert m["usage"]["calls"]["respond"] == 4 * LIMIT


@pytest.mark.slow
def test_an_instruction_with_no_candidate_passing_is_rejected_with_its_candidates(tmp_path):
    with ScriptedServer(AnswerScript()) as srv:
        m = run(srv, tmp_path / "refuse", "--response-model", "m-refuse", "--answers", "2")
    assert m["counts"]["kept"] == 0 and m["by_rule"] == {"sorry_short_response": LIMIT}
    rows = [json.loads(x) for x in (tmp_path / "refuse" / "rejected.jsonl").read_text().splitlines()]
    assert len(rows) == LIMIT and all(len(r["candidates"]) == 2 and r["stage"] == "respond" for r in rows)
    assert "none of the 2 candidate answers passed" in rows[0]["detail"]


@pytest.mark.slow
def test_a_judge_that_never_gives_a_readable_score_is_a_named_outcome(tmp_path):
    script = AnswerScript()
    with ScriptedServer(script) as srv:
        m = run(srv, tmp_path / "garble", "--response-model", "m-garble", "--answers", "2")
        kept = run(
            srv, tmp_path / "kept", "--response-model", "m-garble", "--answers", "2", "--disable-rule", "rank_unclear"
        )
    assert m["by_rule"] == {"rank_unclear": LIMIT} and m["counts"]["kept"] == 0
    rows = [json.loads(x) for x in (tmp_path / "garble" / "rejected.jsonl").read_text().splitlines()]
    assert all(c["ranking"] == "unclear" and len(c["rank_answers"]) == 2 for r in rows for c in r["candidates"])
    assert kept["counts"]["kept"] == LIMIT  # switched off: the first candidate, marked unranked, no evolution
    assert all(rec.candidates[0].best and rec.candidates[0].score is None for rec in records(tmp_path / "kept"))


@pytest.mark.slow
def test_batch_sends_the_answer_stages_as_batch_files_for_half_the_price(tmp_path):
    manifests, calls = {}, {}
    for mode, extra, toml in (("direct", (), ""), ("batch", ("--batch",), "batch_poll_seconds = 0.1\n")):
        with ScriptedServer(AnswerScript()) as srv:
            manifests[mode] = run(srv, tmp_path / mode, *FOUR, "--evolve-answers", "1", *extra, toml=toml)
            calls[mode] = dict(srv.calls)
    for name in ("dataset.json", "records.jsonl", "rejected.jsonl"):
        assert (tmp_path / "batch" / name).read_bytes() == (tmp_path / "direct" / name).read_bytes(), name
    direct, batch = manifests["direct"], manifests["batch"]
    assert batch["usage"]["calls"] == direct["usage"]["calls"] and "evolve_answer" in batch["usage"]["calls"]
    assert calls["batch"].get("chat", 0) == 0 and calls["batch"]["batch_request"] == calls["direct"]["chat"]
    for stage, cost in direct["cost_usd"]["by_stage"].items():
        assert batch["cost_usd"]["by_stage"][stage] == pytest.approx(cost / 2, abs=2e-6)


@pytest.mark.slow
def test_the_prefect_engine_makes_the_same_candidates(tmp_path):
    pytest.importorskip("prefect")
    manifests = {}
    for engine in ("local", "prefect"):
        with ScriptedServer(AnswerScript()) as srv:
            manifests[engine] = run(srv, tmp_path / engine, *FOUR, "--evolve-answers", "1", engine=engine)
    for name in ("dataset.json", "records.jsonl", "rejected.jsonl"):
        assert (tmp_path / "prefect" / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name
    local, flow = manifests["local"], manifests["prefect"]
    assert flow["usage"]["calls"] == local["usage"]["calls"]
    assert flow["cost_usd"]["by_stage"] == local["cost_usd"]["by_stage"] and "rank" in flow["cost_usd"]["by_stage"]


# --- answer evolution


def prompts_with(tmp_path: Path, *directions: str) -> Path:
    root = tmp_path / "prompts"
    shutil.copytree(default_prompts_dir(), root)
    for f in (root / "answers").glob("*.txt"):
        if f.stem not in (*directions, "rank"):
            f.unlink()
    return root


@pytest.mark.slow
def test_an_improved_answer_the_judge_does_not_prefer_is_discarded(tmp_path):
    with ScriptedServer(AnswerScript()) as srv:  # only "creative": the scripted model does worse (-2) there
        run(
            srv,
            tmp_path / "worse",
            "--response-model",
            "m-mid",
            "--evolve-answers",
            "2",
            "--prompts-dir",
            str(prompts_with(tmp_path / "w", "creative")),
        )
    for rec in records(tmp_path / "worse"):
        first, *evolved = rec.candidates
        assert quality(rec.output) == 6 and first.best and first.score == 6
        assert [c.origin for c in evolved] == ["evolved:creative", "evolved:creative"]
        assert all(c.score == 4 and not c.best and c.rule is None for c in evolved)
        assert not any(c.text.startswith("Here is the improved answer") for c in evolved)  # the intro is taken off


@pytest.mark.slow
def test_an_improved_answer_the_judge_prefers_replaces_the_best(tmp_path):
    script = AnswerScript()
    with ScriptedServer(script) as srv:  # only "deeper": +2 per round, each round improving the last
        m = run(
            srv,
            tmp_path / "better",
            "--response-model",
            "m-mid",
            "--evolve-answers",
            "2",
            "--prompts-dir",
            str(prompts_with(tmp_path / "b", "deeper")),
        )
    for rec in records(tmp_path / "better"):
        assert [c.score for c in rec.candidates] == [6, 8, 10]
        assert rec.candidates[-1].best and quality(rec.output) == 10 and rec.candidates[-1].model == "m-mid"
    assert m["usage"]["calls"]["evolve_answer"] == 2 * LIMIT
    report = run_cli("report", str(tmp_path / "better"))
    assert report.returncode == 0, report.stderr
    page = (tmp_path / "better" / "report" / "report.html").read_text()
    assert f"{2 * LIMIT} improved answers asked for, {2 * LIMIT} kept because the judge scored them higher" in page
    assert "rose by 4.00 on average" in page
