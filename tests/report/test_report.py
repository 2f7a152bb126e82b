"""``python -m evol report`` and ``python -m evol score`` on a small real run."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from evol.cli.main import main as cli
from evol.errors import InputError
from evol.report.build import build_report, distinct_n, opening
from evol.testing.server import Reply, ScriptedServer, last_user

from ..output.test_export import EXPECTED, ROOT, SEEDS, make_run, records

PLOTS = ("funnel", "instruction_length", "operations", "rejections", "response_length", "diversity")


def rating(instruction: str) -> str:
    """The scripted judge's answer: evolved instructions (they carry "Moreover") a 7, others a 3, one in words."""
    if "lighthouse" in instruction and "Moreover" in instruction:
        return "Quite hard."
    return "Difficulty: 7/10" if "Moreover" in instruction else "3"


def judge(request: dict) -> Reply:
    prompt = last_user(request)
    text = prompt.split("Instruction:\n", 1)[1].split("\n\nResponse:\n", 1)[0].rsplit("\n\nReply with", 1)[0]
    if "\n\nResponse:\n" in prompt:
        return Reply(content="**Score:** 6/10")  # the quality judge
    return Reply(content=rating(text))


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("runs") / "r", SEEDS, "--include-seeds")


@pytest.fixture(scope="module")
def scored(tmp_path_factory) -> tuple[Path, dict, dict]:
    """A run scored twice against the same scripted judge; returns it with the two summaries' chat counts."""
    out = make_run(tmp_path_factory.mktemp("runs") / "s", SEEDS, "--include-seeds")
    calls = {}
    with ScriptedServer(judge) as srv:
        for attempt in ("first", "second"):
            before = srv.chat_count()
            # this judge reads the one-row prompts: the report plots the scores whatever the method gave them
            assert cli(["-q", "score", str(out), "--method", "direct", "--base-url", srv.base_url]) == 0
            calls[attempt] = srv.chat_count() - before
    scores = {r["id"]: r for r in map(json.loads, (out / "scores.jsonl").read_text().splitlines())}
    return out, scores, calls


def metrics(page: str) -> dict[str, str]:
    return dict(re.findall(r"data-metric=['\"]([^'\"]+)['\"]>([^<]*)<", page))


@pytest.mark.slow
def test_report_writes_every_plot_as_a_real_png(run):
    page = build_report(run)
    assert page == run / "report" / "report.html"
    for name in PLOTS:
        png = (run / "report" / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5_000, name
    assert not (run / "report" / "difficulty.png").exists()  # never scored
    assert "Not scored yet" in page.read_text()


@pytest.mark.slow
def test_numbers_in_the_html_match_the_manifest(run):
    page = build_report(run).read_text()
    manifest = json.loads((run / "manifest.json").read_text())
    found = metrics(page)
    for key, value in manifest["counts"].items():
        if isinstance(value, bool):
            assert found[f"counts.{key}"] == ("yes" if value else "no")
        else:
            assert found[f"counts.{key}"] == str(value), key
    for rnd, row in manifest["by_round"].items():
        for key, value in row.items():
            assert found[f"by_round.{rnd}.{key}"] == str(value)
    for rule, n in manifest["by_rule"].items():
        assert found[f"by_rule.{rule}"] == str(n)
    for key in ("judged", "resolved_by_retry", "unclear_after_retry"):
        assert found[f"judge.{key}"] == str(manifest["judge"][key])
    for op, row in manifest["by_operation"].items():
        for key in ("attempts", "kept", "eliminated", "duplicate", "failed"):
            assert found[f"by_operation.{op}.{key}"] == str(row.get(key, 0))
    assert found["counts.kept"] == str(EXPECTED["kept"])  # and the manifest itself is what the script implies


@pytest.mark.slow
def test_html_is_self_contained(run):
    page = build_report(run).read_text()
    assert page.count("src='data:image/png;base64,") == len(PLOTS)
    assert not re.search(r"<(script|link)\b", page)
    assert not re.search(r"src=['\"]https?:", page)
    # user text is escaped: the leaked template marker shows as text
    assert "#Rewritten Prompt#" in page and "<script" not in page


@pytest.mark.slow
def test_report_shows_the_funnel_rules_and_examples(run):
    page = build_report(run).read_text()
    for rule in ("sorry_short_response", "no_information_gain", "prompt_leak", "exact_duplicate", "backend_error"):
        assert rule in page
    assert "Median instruction length went from" in page
    assert "class='lineage'" in page


@pytest.mark.slow
def test_scores_are_stored_per_record_and_plotted(scored):
    out, scores, _calls = scored
    recs = records(out)
    assert {r["id"] for r in recs} <= set(scores)
    # the one seed the run could not answer is scored too, from the seed file, for the round-0 baseline
    assert len(scores) == len(recs) + 1
    for r in recs:
        row = scores[r["id"]]
        assert row["round"] == r["round"] and row["model"] == "scripted-model" and row["quality"] == 6
        answer = rating(r["instruction"])
        if answer == "Quite hard.":  # kept, so the user can see what came back
            assert row["complexity"] is None
            assert row["unclear"] == {"complexity": {"outcome": "no_score", "answer": answer}}
        else:
            assert row["complexity"] == (7 if "7" in answer else 3) and row["unclear"] == {}
    build_report(out)
    assert (out / "report" / "difficulty.png").stat().st_size > 5_000
    page = (out / "report" / "report.html").read_text()
    assert "Mean judged complexity went from 3.0 (seeds) to 7.0 (round 3)" in page
    assert (out / "report" / "quality.png").stat().st_size > 5_000
    assert page.count("src='data:image/png;base64,") == len(PLOTS) + 2  # complexity and quality per round


@pytest.mark.slow
def test_scoring_again_pays_nothing(scored):
    out, scores, calls = scored
    assert calls["first"] == len(scores) + len(records(out))  # complexity of every row, quality of every answer
    assert calls["second"] == 0


def test_diversity_measures():
    assert distinct_n(["a b a b"], 1) == 0.5
    assert distinct_n(["a b a b"], 2) == 2 / 3
    assert distinct_n([], 2) == 0.0
    assert opening("Could you please explain the theory of relativity?") == ("explain", "theory")
    assert opening("Write a poem about the sea.") == ("write", "poem")
    assert opening("") == (None, None)


def test_report_of_a_folder_that_is_no_run(tmp_path):
    with pytest.raises(InputError, match=r"no manifest.json"):
        build_report(tmp_path)


@pytest.mark.slow
def test_report_cli(run, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "evol", "report", str(run), "--out", str(tmp_path / "rep")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"report": str(tmp_path / "rep" / "report.html")}
    assert (tmp_path / "rep" / "funnel.png").is_file()


@pytest.mark.slow
def test_report_renders_in_headless_chromium(run, tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    page = build_report(run)
    shot = tmp_path / "report.png"
    proc = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1280,900",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert shot.stat().st_size > 20_000
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (900, 1280)
    # not a blank page: the rendered report has text, cards and a plot, so many distinct colours
    colours = {tuple(p) for p in (pixels[::7, ::7, :3] * 255).astype(int).reshape(-1, 3)}
    assert len(colours) > 50


@pytest.mark.slow
def test_report_compares_the_chosen_rows_with_the_run(scored, tmp_path):
    out, _, _ = scored
    page = build_report(out, tmp_path / "before").read_text()
    assert "No export chose rows by score yet" in page
    assert cli(["-q", "export", str(out), "--out", str(out / "export"), "--select", "6", "--by", "complexity"]) == 0
    page = build_report(out, tmp_path / "after").read_text()
    assert (tmp_path / "after" / "selection.png").stat().st_size > 5_000
    found = metrics(page)
    chosen = json.loads((out / "export" / "export.json").read_text())["selected"]
    assert len(chosen) == 6
    assert float(found["selection.complexity.chosen.mean"]) == pytest.approx(
        sum(s["complexity"] for s in chosen) / 6, abs=0.01
    )
    assert float(found["selection.complexity.chosen.mean"]) > float(found["selection.complexity.all.mean"])
    assert "mean similarity to its nearest chosen neighbour" in page
    with pytest.raises(InputError, match=r"has no export.json"):
        build_report(out, tmp_path / "x", export=tmp_path)
    shutil.rmtree(out / "export")


@pytest.mark.slow
def test_report_reads_an_old_difficulty_only_scores_file(run, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(run, old)
    rows = [
        {"id": r["id"], "round": r["round"], "score": 2 + r["round"], "model": "m", "prompt_sha256": "x"}
        for r in records(old)
    ]
    (old / "scores.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    page = build_report(old).read_text()
    assert (old / "report" / "difficulty.png").exists() and not (old / "report" / "quality.png").exists()
    assert "Mean judged complexity went from 2.0 (seeds) to 5.0 (round 3)" in page
