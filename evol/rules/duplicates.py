"""The duplicate rules: an instruction that repeats a seed or an earlier kept evolution is not kept twice.

They fire while a round is settled, in pool (seed) order, so the earliest copy is the one kept whatever the
answer timing; the index that finds the matches is ``evol.dedup``.
"""

from __future__ import annotations

from evol.dedup.index import Deduper
from evol.models import Record, Rejection, asked
from evol.rules.rule import Rule

DUPLICATE = Rule(
    ("exact_duplicate", "near_duplicate"),
    "the instruction repeats a seed or an earlier kept evolution (rapidfuzz, `--dedup-threshold`, default 0.9); the earliest copy is kept. Near matches are looked for in other seeds' lineages only: an in-depth evolution stays close to its own seed and earlier evolutions by design, and whether it gained anything is the judge's call. An exact repeat (after folding case, punctuation and spaces) of anything, its own ancestors included, is an `exact_duplicate`",
)


def check_duplicate(deduper: Deduper, record: Record) -> Rejection | None:
    """``record`` rejected as a duplicate of a text the index holds, or None. Near matches are looked for in other
    seeds' lineages only: an evolution is never a near-duplicate of its own ancestors (exact repeats still are)."""
    match = deduper.check(asked(record.history, record.instruction), record.seed_id)
    if match is None:
        return None
    return record.rejected(
        "duplicate",
        match.rule,
        f"duplicates {match.duplicate_of} (score {match.score:.2f})",
        "dedup",
        duplicate_of=match.duplicate_of,
        score=match.score,
    )
