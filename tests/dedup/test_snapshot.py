"""A snapshot of the dedup index (what ``check_settled`` sees) read back in another process's index decides the same."""

from __future__ import annotations

import numpy as np
import pytest

import evol.dedup.index as dedup
from evol.dedup.index import Deduper

from .test_dedup import FILLERS, planted


def queries(texts: list[str]) -> list[str]:
    """Each text as it is, shouted, and a word longer: exact repeats, exact after normalising, near copies."""
    out = []
    for i, text in enumerate(texts):
        words = text.split()
        words.insert(1 + i % (len(words) - 1), FILLERS[i % len(FILLERS)])
        out += [text, text.upper() + "!", " ".join(words)]
    return [*out, "Something else entirely, about nothing above.", ""]


def settled_index(scorer: str) -> tuple[Deduper, list[str]]:
    """Seeds (each its own lineage), a round settled onto them, the mark, then texts kept after it."""
    texts, _ = planted()
    seeds, round_1, round_2 = texts[:20], texts[20:50], texts[50:]
    index = Deduper(0.9, scorer)
    index.extend([f"s{i}" for i in range(len(seeds))], seeds, [f"s{i}" for i in range(len(seeds))])
    for i, text in enumerate(round_1):  # as settling does: checked, kept if new, in its seed's lineage
        if index.check(text, f"s{i % 20}") is None:
            index.add(f"s{i % 20}.r1", text, f"s{i % 20}")
    index.begin_round()
    for i, text in enumerate(round_2):  # kept after the round began: no pre-answer check may see them
        if index.check(text, f"s{i % 20}") is None:
            index.add(f"s{i % 20}.r2", text, f"s{i % 20}")
    return index, texts


@pytest.mark.parametrize("fresh_keys", [1, 24 * 5, 1 << 18])  # keys in the arrays, in both, in the dict
@pytest.mark.parametrize("scorer", ["ratio", "token_set_ratio"])
def test_a_snapshot_decides_what_the_index_decided_when_the_round_began(monkeypatch, scorer, fresh_keys):
    monkeypatch.setattr(dedup, "_FRESH_KEYS", fresh_keys)
    index, texts = settled_index(scorer)
    loaded = Deduper.from_snapshot(index.snapshot())
    assert len(loaded) < len(index)  # only what was kept when the round began
    asked = [(q, lineage) for q in queries(texts) for lineage in (None, "s3", "s11", "nobody")]
    here = [index.check_settled(q, lineage) for q, lineage in asked]
    assert [loaded.check_settled(q, lineage) for q, lineage in asked] == here
    rules = {m.rule for m in here if m is not None}
    assert rules == {"exact_duplicate", "near_duplicate"} and None in here
    # the mark and the lineages matter, so the equality above is no accident of everything matching
    assert any(index.check(q, lin) != m for (q, lin), m in zip(asked, here, strict=True))
    by_lineage = dict(zip(asked, here, strict=True))
    assert any(
        by_lineage[q, None] is not None and by_lineage[q, "s3"] is None for q, lineage in asked if lineage is None
    )


def test_the_same_texts_give_the_same_bytes_whatever_the_layout(monkeypatch):
    texts, _ = planted()
    ids = [str(i) for i in range(len(texts))]
    batch = Deduper(0.9)  # dedup's chunks: keys in the pending arrays, merged into the main ones
    kept = [i for i, m in enumerate(batch.dedup(ids, texts, ids)) if m is None]
    one_by_one = Deduper(0.9)  # keys in the dict
    for i in kept:
        one_by_one.add(ids[i], texts[i], ids[i])
    monkeypatch.setattr(dedup, "_FRESH_KEYS", 24 * 3)
    merged = Deduper(0.9)  # keys merged into the arrays every three texts
    merged.extend([ids[i] for i in kept], [texts[i] for i in kept], [ids[i] for i in kept])
    for index in (batch, one_by_one, merged):
        index.begin_round()
    # dedup gives the variants it rejected codes too: a lineage no kept text has exempts nothing either way
    assert batch.snapshot() == one_by_one.snapshot() == merged.snapshot()


def test_a_snapshot_is_read_back_or_refused():
    index, _ = settled_index("ratio")
    data = index.snapshot()
    with pytest.raises(ValueError):
        Deduper.from_snapshot(b"PK\x03\x04 not ours")
    with pytest.raises(ValueError):
        Deduper.from_snapshot(data[:-1])
    with pytest.raises(ValueError):  # its query texts need the same embedder: not shipped
        Deduper(0.9, embed=lambda texts: np.ones((len(texts), 2), np.float32)).snapshot()
    empty = Deduper.from_snapshot(Deduper(0.9).snapshot())  # nothing kept yet
    assert len(empty) == 0 and empty.check_settled("anything") is None
