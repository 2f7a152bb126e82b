"""evol.rundir.manifest: the one reader of manifest.json, tolerant of older and newer manifests, strict about non-manifests."""

from __future__ import annotations

import json

import pytest

from evol.errors import InputError
from evol.rundir.manifest import AnswerSettings, Counts, Manifest, load_manifest


def write(folder, data) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")


def test_an_older_manifest_loads_with_defaults_and_a_newer_ones_keys_are_ignored(tmp_path):
    write(tmp_path, {"run_id": "r", "counts": {"seeds": 3, "kept": 2, "from_the_future": 1}, "judge": None, "new": {}})
    m = load_manifest(tmp_path)  # the folder or the file
    assert m == load_manifest(tmp_path / "manifest.json")
    assert (m.run_id, m.counts.seeds, m.counts.kept, m.counts.attempts, m.counts.balanced) == ("r", 3, 2, 0, True)
    assert m.judge.unclear == 0 and m.usage.calls == {} and m.cost_usd.total == 0.0 and m.backend.judge_model is None
    assert m.counts.given("seeds") == 3 and m.counts.given("rounds_done") == "?"  # what the file did not say
    assert m.given("status", None) is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, r"has no manifest\.json"),
        ("{not json", r"manifest\.json is not valid JSON"),
        ([1, 2], r"is not a run manifest \(it has no counts\)"),
        ({"status": "complete"}, r"is not a run manifest \(it has no counts\)"),
        ({"counts": {"kept": "many"}}, r"is not a run manifest \(counts\.kept: "),
    ],
)
def test_what_is_not_a_manifest_is_one_sentence(tmp_path, content, message):
    if content is None:
        tmp_path.mkdir(exist_ok=True)
    else:
        write(tmp_path, content)
    with pytest.raises(InputError, match=message):
        load_manifest(tmp_path)


def test_the_dump_leaves_unset_optional_blocks_out_and_reads_back_the_same():
    m = Manifest(status="complete", counts=Counts(seeds=1, kept=1, attempts=1, rounds_done=1))
    data = m.dump()
    assert "answers" not in data and "chunks" not in data and "response_models" not in data["backend"]
    assert list(data)[:3] == ["out", "status", "reason"] and data["cost_usd"]["budget"] is None
    assert Manifest.model_validate(data) == m
    with_answers = m.model_copy(update={"answers": AnswerSettings(candidates=2, evolve_answers=0, ranking="x")})
    assert with_answers.dump()["answers"] == {"candidates": 2, "evolve_answers": 0, "ranking": "x"}
