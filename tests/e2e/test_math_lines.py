"""WizardMath's two lines (issue #28): ``--profile math`` evolves every seed downward and upward as two lineages,
each with its own rounds, and a killed, resumed or re-run run writes the same dataset.

Real ``python -m evol run --engine local`` subprocesses against the scripted server on 127.0.0.1
(tests/mathscript.py: answers that depend only on the request).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from evol.testing.server import ScriptedServer

from ..conftest import ROOT
from ..mathscript import PROBLEMS, MathScript

ROUNDS = 3
LINES = ("downward", "upward")
OUTPUTS = ("dataset.json", "records.jsonl", "rejected.jsonl")


def command(seeds: Path, out: Path, url: str) -> list[str]:
    return [
        sys.executable, "-m", "evol", "run", "--engine", "local", "--seeds", str(seeds), "--rounds", str(ROUNDS),
        "--profile", "math", "--seed", "3", "--concurrency", "2", "--base-url", url, "--out", str(out),
    ]  # fmt: skip


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "EVOL_API_KEY")}


def run(seeds: Path, out: Path, url: str) -> None:
    proc = subprocess.run(command(seeds, out, url), capture_output=True, text=True, env=env(), cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("math") / "problems.txt"
    path.write_text("\n".join(PROBLEMS) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def full(seeds, tmp_path_factory) -> tuple[Path, int]:
    """The run never stopped, and how many requests it sent."""
    out = tmp_path_factory.mktemp("math") / "full"
    with ScriptedServer(MathScript()) as srv:
        run(seeds, out, srv.base_url)
        return out, len(srv.requests)


def test_each_seed_is_evolved_downward_and_upward_as_two_lineages(full):
    out, _ = full
    records = read_jsonl(out / "records.jsonl")
    rows = records + read_jsonl(out / "rejected.jsonl")
    evolved = [r for r in rows if r["round"] > 0]
    seed_ids = [r["id"] for r in records if r["round"] == 0]
    assert len(seed_ids) == len(PROBLEMS)  # the seeds are in the dataset once, not once per line
    assert all("line" not in r for r in rows if r["round"] == 0)
    # every seed is tried once a round on each line, each line with its own operations
    assert Counter((r["seed_id"], r["line"], r["round"]) for r in evolved) == Counter(
        {(s, line, n): 1 for s in seed_ids for line in LINES for n in range(1, ROUNDS + 1)}
    )
    assert {r["operation"] for r in evolved if r["line"] == "downward"} == {"downward"}
    assert {r["operation"] for r in evolved if r["line"] == "upward"} == {"upward_constraints", "upward_reasoning"}
    # ids unique and deterministic, naming the line
    assert len({r["id"] for r in rows}) == len(rows)
    assert all(r["id"] == f"{r['seed_id']}.{r['line']}.r{r['round']}" for r in evolved)
    # a parent is the seed itself or a kept evolution of the same line: no upward evolution descends from a
    # downward one (nor the other way round)
    kept = {r["id"]: r for r in records}
    for r in evolved:
        parent = kept[r["parent_id"]]
        if parent["round"] == 0:
            assert parent["id"] == r["seed_id"], r["id"]
        else:
            assert parent["line"] == r["line"] and parent["seed_id"] == r["seed_id"], r["id"]
    # both lines reach the dataset from every seed, the upward one from the seed itself
    for s in seed_ids:
        for line in LINES:
            mine = [r for r in records if r["seed_id"] == s and r.get("line") == line]
            assert mine, (s, line)
    # the script keeps every evolution of a seed itself: each line's round 1 is the seed's own child
    assert {r["seed_id"] for r in records if r["round"] == 1 and r["parent_id"] == r["seed_id"]} == set(seed_ids)
    assert {r["line"] for r in records if r["round"] == 1} == set(LINES)
    # a later round builds on the line's own kept evolution: the script's downward and upward additions never mix
    for r in records:
        if r.get("line") == "upward":
            assert "whole numbers below" not in r["instruction"], r["id"]
        if r.get("line") == "downward":
            assert "multiplied by" not in r["instruction"], r["id"]
    manifest = json.loads((out / "manifest.json").read_text())
    c = manifest["counts"]
    assert c["balanced"] and c["attempts"] == len(PROBLEMS) * len(LINES) * ROUNDS
    assert c["eliminated"] > 0  # some evolutions failed and left their parent in place
    assert c["dataset_rows"] == len(json.loads((out / "dataset.json").read_text()))


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_same_dataset_and_a_rerun_sends_nothing(seeds, full, tmp_path):
    ref, n_requests = full
    out = tmp_path / "killed"
    with ScriptedServer(MathScript(delay=0.03)) as srv:
        proc = subprocess.Popen(
            command(seeds, out, srv.base_url), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env(), cwd=ROOT
        )
        try:
            deadline = time.monotonic() + 120
            while len(srv.requests) < 0.4 * n_requests:
                assert proc.poll() is None, "the run ended before it could be killed"
                assert time.monotonic() < deadline, "timed out waiting for 40% of the calls"
                time.sleep(0.01)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        assert proc.returncode == -signal.SIGKILL
        assert (
            not (out / "dataset.json").exists()
            or (out / "dataset.json").read_bytes() != (ref / "dataset.json").read_bytes()
        )
        run(seeds, out, srv.base_url)  # the same command resumes
        for name in OUTPUTS:
            assert (out / name).read_bytes() == (ref / name).read_bytes(), name
        sent = len(srv.requests)
        run(seeds, out, srv.base_url)  # and again: every call comes from the run's cache
        assert len(srv.requests) == sent
        for name in OUTPUTS:
            assert (out / name).read_bytes() == (ref / name).read_bytes(), name
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["cache"]["misses"] == 0
