"""evol.rundir.spool: settled rounds on disk, joined into the outputs byte for byte, and the totals the manifest reads."""

from __future__ import annotations

import json
from typing import Literal

import pytest

from evol.errors import ConfigError
from evol.models import Record, Rejection
from evol.rundir.folder import RunDir
from evol.rundir.spool import SPOOL, Spool, Totals


def record(seed: int, round_no: int, instruction: str, output: str = "an answer", op: str = "deepen") -> Record:
    return Record(
        id=f"s{seed}.r{round_no}",
        seed_id=f"s{seed}",
        seed_index=seed,
        parent_id=f"s{seed}",
        round=round_no,
        operation=op if round_no else "seed",
        instruction=instruction,
        output=output,
    )


def rejection(
    seed: int,
    round_no: int,
    rule: str,
    kind: Literal["eliminated", "duplicate", "failed", "skipped"] = "eliminated",  # Rejection.kind
    stage: str = "evolve",
    op: str = "deepen",
) -> Rejection:
    return Rejection(
        kind=kind,
        rule=rule,
        stage=stage,
        id=f"s{seed}.r{round_no}",
        seed_id=f"s{seed}",
        seed_index=seed,
        round=round_no,
        operation=op if round_no else "seed",
    )


# texts that json escapes: quotes, backslashes, newlines, non-ASCII, U+2028, a lone line of spaces
AWKWARD = ['Say "hi"\\n to\nme', "naïve café ✓", "line\u2028separator", "   ", "{x} ${y} %(z)s"]


def test_joined_outputs_equal_json_dumps_of_every_round_in_order(tmp_path):
    spool = Spool(RunDir(tmp_path))
    spool.reset()
    rounds = {
        0: ([record(0, 0, AWKWARD[0], AWKWARD[1])], [rejection(1, 0, "invalid_seed", "skipped", "load")]),
        1: ([], [rejection(0, 1, "prompt_leak")]),  # a round that kept nothing
        2: ([record(0, 2, AWKWARD[2]), record(1, 2, AWKWARD[3], AWKWARD[4])], []),
    }
    for n in (0, 2, 1):  # whatever order rounds are written in, the outputs follow round order
        spool.put(n, *rounds[n])
    rows = [r for n in sorted(rounds) for r in rounds[n][0]]
    dataset = "".join(spool.dataset())
    assert (
        dataset
        == json.dumps([{"instruction": r.instruction, "output": r.output} for r in rows], ensure_ascii=False, indent=2)
        + "\n"
    )
    assert json.loads(dataset)[2]["output"] == AWKWARD[4]
    records = "".join(spool.lines("records")).split("\n")[:-1]  # not splitlines: U+2028 stays raw
    assert [json.loads(line)["id"] for line in records] == ["s0.r0", "s0.r2", "s1.r2"]
    rejected = "".join(spool.lines("rejected")).split("\n")[:-1]
    assert [json.loads(line)["id"] for line in rejected] == ["s1.r0", "s0.r1"]


def test_no_rows_is_an_empty_list_and_a_rewritten_round_replaces_the_old_one(tmp_path):
    spool = Spool(RunDir(tmp_path))
    spool.reset()
    spool.put(0, [], [rejection(3, 0, "invalid_seed", "skipped", "load")])
    assert "".join(spool.dataset()) == "[]\n"
    spool.put(0, [record(0, 0, "a seed")], [])  # round 0 again, once its seeds are answered
    assert json.loads("".join(spool.dataset())) == [{"instruction": "a seed", "output": "an answer"}]
    assert "".join(spool.lines("rejected")) == ""


def test_reset_forgets_a_previous_runs_rounds_and_remove_leaves_nothing(tmp_path):
    run_dir = RunDir(tmp_path)
    old = Spool(run_dir)
    old.reset()
    for n in range(4):
        old.put(n, [record(0, n, f"text {n}")], [])
    new = Spool(run_dir)
    new.reset()  # e.g. the same --out with fewer rounds: rounds 2 and 3 must not come back
    new.put(0, [record(0, 0, "seed")], [])
    new.put(1, [record(0, 1, "one")], [])
    assert [r["instruction"] for r in json.loads("".join(new.dataset()))] == ["seed", "one"]
    assert sorted(p.name for p in (tmp_path / SPOOL).iterdir()) == [
        f"{n}.{k}" for n in (0, 1) for k in ("dataset", "records.jsonl", "rejected.jsonl")
    ]
    new.remove()
    assert not (tmp_path / SPOOL).exists()


def test_a_spool_planted_as_a_link_out_of_the_run_folder_is_refused(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    run = tmp_path / "run"
    run.mkdir()
    (run / SPOOL).symlink_to(outside)
    with pytest.raises(ConfigError, match="outside the run folder"):
        Spool(RunDir(run))
    assert (outside / "keep.txt").read_text() == "mine"


def test_totals_count_what_the_manifest_reports():
    t = Totals()
    t.add([rejection(9, 0, "invalid_seed", "skipped", "load")])
    t.add([record(0, 0, "seed"), rejection(1, 0, "empty_response", stage="respond")])
    t.add(
        [
            record(0, 1, "a"),
            rejection(1, 1, "prompt_leak"),
            rejection(2, 1, "near_duplicate", "duplicate", "dedup", op="breadth"),
            rejection(3, 1, "backend_error", "failed", "judge", op="breadth"),
        ]
    )
    t.add([record(0, 2, "b"), record(1, 2, "c", op="breadth")])
    assert (t.seed_records, t.seed_rejections) == (1, 1)  # the skipped seed is not an answered one
    assert {n: dict(c) for n, c in t.by_round.items()} == {
        1: {"kept": 1, "eliminated": 1, "duplicate": 1, "failed": 1},
        2: {"kept": 2},
    }
    assert [t.count(k) for k in ("kept", "eliminated", "duplicate", "failed")] == [3, 1, 1, 1]
    assert dict(t.by_operation["breadth"]) == {"attempts": 3, "duplicate": 1, "failed": 1, "kept": 1}
    assert dict(t.by_rule) == {
        "invalid_seed": 1,
        "empty_response": 1,
        "prompt_leak": 1,
        "near_duplicate": 1,
        "backend_error": 1,
    }
    assert t.by_reason["judge", "failed", "backend_error"] == 1
    assert t.seeds_with_kept == {"s0", "s1"}
