"""The round's dedup index for chunks in other processes: written once a round into the run folder, read once per
process and round, and decided on as the flow's own index would."""

from __future__ import annotations

import logging

from evol.dedup.index import Deduper
from evol.engines.prefect import chunks

SEEDS = [
    "Describe the history of the printing press for a curious reader.",
    "Write a short poem about rain falling on a tin roof at night.",
    "List five ways to keep a sourdough starter alive while travelling.",
]
NEAR_B = SEEDS[1].replace("short poem", "short little poem")


def index_at_round() -> Deduper:
    index = Deduper(0.9)
    index.extend(["a", "b", "c"], SEEDS, ["a", "b", "c"])
    index.begin_round()
    index.add("a.r1", "Explain how tides form, step by step, for a child.", "a")  # kept after the round began
    return index


def test_a_process_reads_the_round_index_once_and_decides_as_the_flow(tmp_path, monkeypatch):
    run_dir = str(tmp_path)
    index = index_at_round()
    digest, size = chunks.write_kept(run_dir, 1, index)
    assert (tmp_path / chunks.kept_name(1)).stat().st_size == size
    assert not list(tmp_path.rglob(".*.tmp"))

    reads = []
    real = chunks._read_kept
    monkeypatch.setattr(chunks, "_read_kept", lambda *a: reads.append(a) or real(*a))
    got = chunks.kept_index(run_dir, 1, digest)
    assert got is not None and all(chunks.kept_index(run_dir, 1, digest) is got for _ in range(5))
    assert len(reads) == 1  # once for all the process's chunks of the round
    for text, lineage in [
        (SEEDS[0].upper(), "b"),  # an exact repeat of a seed: caught
        (NEAR_B, "c"),  # near another lineage's seed: caught
        (NEAR_B, "b"),  # near its own seed: not a duplicate
        ("Explain how tides form, step by step, for a child.", "b"),  # kept this round: settling's to find
    ]:
        assert got.check_settled(text, lineage) == index.check_settled(text, lineage)
    assert got.check_settled(SEEDS[0].upper(), "b").rule == "exact_duplicate"
    assert got.check_settled(NEAR_B, "c").rule == "near_duplicate"
    assert got.check_settled(NEAR_B, "b") is None
    assert got.check_settled("Explain how tides form, step by step, for a child.", "b") is None

    index.begin_round()  # the next round sees the text kept in this one
    digest_2, _ = chunks.write_kept(run_dir, 2, index)
    got_2 = chunks.kept_index(run_dir, 2, digest_2)
    assert len(reads) == 2 and got_2 is not got
    assert got_2 is not None and got_2.check_settled("Explain how tides form, step by step, for a child.", "b")


def test_an_index_that_is_not_the_flows_is_not_used(tmp_path, caplog):
    run_dir = str(tmp_path / "run")
    digest, _ = chunks.write_kept(run_dir, 1, index_at_round())
    with caplog.at_level(logging.WARNING, logger="evol"):
        assert chunks.kept_index(run_dir, 1, "0" * 64) is None  # another flow's
        assert chunks.kept_index(str(tmp_path / "elsewhere"), 1, digest) is None  # missing
    assert "answer every evolution" in caplog.text
    assert chunks.kept_index(run_dir, 1, digest) is not None
