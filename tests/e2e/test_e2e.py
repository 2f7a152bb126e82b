"""End to end: ``python -m evol run`` over the 175 Self-Instruct seeds against a real local HTTP server."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from evol.prompts import load_profile
from evol.seeds import load_seeds
from evol.testing.server import ScriptedServer

from ..conftest import SEEDS, run_cli
from ..scripted import EvolScript, planted

pytestmark = pytest.mark.slow  # every test reads or repeats a 3-round run over the 175 seeds (7-33 s)

ROUNDS = 3


def run_scripted(out, *extra: str):
    seeds = load_seeds(SEEDS).seeds
    script = EvolScript([s.instruction for s in seeds])
    with ScriptedServer(script) as srv:
        proc = run_cli(
            "run",
            "--seeds",
            str(SEEDS),
            "--rounds",
            str(ROUNDS),
            "--seed",
            "7",
            "--out",
            str(out),
            "--base-url",
            srv.base_url,
            "--concurrency",
            "16",
            *extra,
        )
        calls = srv.chat_count()
    assert proc.returncode == 0, proc.stderr
    return seeds, srv, calls


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "a"
    seeds, srv, calls = run_scripted(out)
    return out, seeds, srv, calls


def test_each_rule_fires_exactly_where_planted(full_run):
    out, seeds, _, _ = full_run
    rejected = read_jsonl(out / "rejected.jsonl")
    got = {(r["id"], r["rule"]) for r in rejected}
    expected = {
        (f"{s.id}.r{n}", planted(s.index, n))
        for s in seeds
        for n in range(1, ROUNDS + 1)
        if planted(s.index, n) is not None
    }
    assert got == expected
    # every kind of planted failure really occurred, so the assertion above covers every rule
    assert {rule for _, rule in expected} == {
        "empty_evolution",
        "truncated_evolution",
        "identical_to_parent",
        "prompt_leak",
        "no_information_gain",
        "sorry_short_response",
        "stopwords_only_response",
        "empty_response",
        "truncated_response",
        "exact_duplicate",
        "near_duplicate",
        "backend_error",
    }
    records = read_jsonl(out / "records.jsonl")
    kept = {r["id"] for r in records if r["round"] > 0}
    assert kept == {f"{s.id}.r{n}" for s in seeds for n in range(1, ROUNDS + 1) if planted(s.index, n) is None}
    # and every seed is in the dataset with the output its file gives it (the default, as WizardLM's training set)
    assert [(r["id"], r["output"]) for r in records if r["round"] == 0] == [(s.id, s.output) for s in seeds]


def test_failed_evolutions_leave_the_parent_in_the_pool(full_run):
    out, seeds, _, _ = full_run
    records = {r["id"]: r for r in read_jsonl(out / "records.jsonl")}
    rejected = {r["id"]: r for r in read_jsonl(out / "rejected.jsonl")}
    checked = 0
    for s in seeds:
        parent = s.id
        for n in range(1, ROUNDS + 1):
            cid = f"{s.id}.r{n}"
            row = records.get(cid) or rejected[cid]
            assert row["parent_id"] == parent, cid
            if cid in records:
                parent = cid  # a kept evolution replaces its parent
            else:
                checked += 1
    assert checked > 50


def test_every_operation_occurs_and_dedup_names_the_original(full_run):
    out, seeds, _, _ = full_run
    rows = read_jsonl(out / "records.jsonl") + read_jsonl(out / "rejected.jsonl")
    ops = Counter(r["operation"] for r in rows if r["round"] > 0)  # round 0: the seeds themselves
    # one turn per conversation (the default): a follow-up operation is never eligible
    assert set(ops) == {op.name for op in load_profile("general").operations if not op.follow_up}
    dups = [r for r in rows if r.get("kind") == "duplicate"]
    assert dups
    for r in dups:
        j = r["seed_index"]
        assert r["duplicate_of"] == f"{seeds[j - 1].id}.r1"
        assert r["score"] >= 0.9


def test_dataset_is_alpaca_and_manifest_adds_up(full_run):
    out, seeds, _, calls = full_run
    data = json.loads((out / "dataset.json").read_text())
    records = read_jsonl(out / "records.jsonl")
    rejected = read_jsonl(out / "rejected.jsonl")
    assert isinstance(data, list) and data
    assert all(
        set(row) == {"instruction", "output"} and all(isinstance(v, str) and v for v in row.values()) for row in data
    )
    assert [d["instruction"] for d in data] == [r["instruction"] for r in records]
    m = json.loads((out / "manifest.json").read_text())
    c = m["counts"]
    assert m["status"] == "complete"
    assert c["seeds"] == len(seeds) == 175
    assert c["attempts"] == len(seeds) * ROUNDS == c["kept"] + c["eliminated"] + c["duplicate"] + c["failed"]
    assert c["balanced"] is True
    # the dataset: every seed (with its file's own output, so no call) and every kept evolution
    assert c["seed_records"] == len(seeds)
    assert c["kept"] + c["seed_records"] == len(records) == len(data)
    assert c["eliminated"] + c["duplicate"] + c["failed"] == len(rejected)
    assert m["by_rule"] == dict(Counter(r["rule"] for r in rejected))
    assert sum(v["attempts"] for v in m["by_round"].values()) == c["attempts"]
    assert m["usage"]["calls"]["evolve"] + m["usage"]["calls_failed"]["evolve"] == c["attempts"]
    # every call the server saw is accounted for (the planted 400s are not retried)
    assert sum(m["usage"]["calls"].values()) + sum(m["usage"]["calls_failed"].values()) == calls
    assert set(m["prompt_sha256"]) >= {"general/mutation", "judge"}
    assert sum(v["attempts"] for v in m["by_operation"].values()) == c["attempts"]
    # files in round order, seed order within a round; a complete run leaves no spool of rounds behind
    assert [(r["round"], r["seed_index"]) for r in records] == sorted((r["round"], r["seed_index"]) for r in records)
    assert [(r["round"], r["seed_index"]) for r in rejected] == sorted((r["round"], r["seed_index"]) for r in rejected)
    assert not (out / ".rounds").exists()


def test_same_seed_same_answers_same_bytes(full_run, tmp_path):
    out, _, _, _ = full_run
    run_scripted(tmp_path / "b")
    assert (tmp_path / "b" / "dataset.json").read_bytes() == (out / "dataset.json").read_bytes()
    assert (tmp_path / "b" / "records.jsonl").read_bytes() == (out / "records.jsonl").read_bytes()


def test_rerun_into_the_same_folder_pays_for_nothing(full_run):
    out, _, _, _ = full_run
    before = (out / "dataset.json").read_bytes()
    failed_before = json.loads((out / "manifest.json").read_text())["counts"]["failed"]
    _, _, calls = run_scripted(out)
    # only the calls that never completed (the planted HTTP 400s) are sent again; they were never paid for
    assert calls == failed_before
    assert (out / "dataset.json").read_bytes() == before
    assert json.loads((out / "manifest.json").read_text())["cache"]["misses"] == failed_before


def test_template_syntax_in_a_seed_reaches_the_model_verbatim(tmp_path):
    weird = "{instruction} $x %s <PROMPT> ${instruction} {{}} $$ {0}"
    seed_file = tmp_path / "seeds.txt"
    seed_file.write_text(weird + "\n")
    with ScriptedServer(lambda req: "Not Equal") as srv:
        proc = run_cli(
            "run",
            "--seeds",
            str(seed_file),
            "--rounds",
            "1",
            "--out",
            str(tmp_path / "out"),
            "--base-url",
            srv.base_url,
            "--disable-rule",
            "stopwords_only_response",
        )
        bodies = [m["content"] for req in srv.requests for m in req["messages"]]
    assert proc.returncode == 0, proc.stderr
    # the seed is answered for the dataset as it is written, and evolved as it is written
    assert bodies.count(weird) == 1
    evolve_prompt = next(b for b in bodies if "#Given Prompt#:" in b)
    assert f"#Given Prompt#:\n{weird}\n" in evolve_prompt
