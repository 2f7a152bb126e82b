"""The duplicate rules: an instruction that repeats a seed or an earlier kept evolution is not kept twice.

They fire while a round is settled, in pool (seed) order, so the earliest copy is the one kept whatever the
answer timing; the index that finds the matches is ``evol.dedup``. An evolution that already repeats a text settled
before it is not answered at all (``Evolver.step`` looks first): settling would reject it whatever its answer.
"""

from __future__ import annotations

from evol.dedup.index import Deduper
from evol.models import Record, Rejection, asked
from evol.rules.rule import Rule

DUPLICATE = Rule(
    ("exact_duplicate", "near_duplicate"),
    "the instruction repeats a seed or an earlier kept evolution (rapidfuzz, `--dedup-threshold`, default 0.9); the earliest copy is kept. Near matches are looked for in other seeds' lineages only: an in-depth evolution stays close to its own seed and earlier evolutions by design, and whether it gained anything is the judge's call. An exact repeat (after folding case, punctuation and spaces) of anything, its own ancestors included, is an `exact_duplicate`",
)


#: the stages of an answer, which a duplicate's rejection keeps none of
ANSWER_STAGES = ("respond", "evolve_answer", "rank")


def check_duplicate(deduper: Deduper, record: Record) -> Rejection | None:
    """``record`` rejected as a duplicate of a text the index holds, or None. Near matches are looked for in other
    seeds' lineages only: an evolution is never a near-duplicate of its own ancestors (exact repeats still are)."""
    match = deduper.check(asked(record.history, record.instruction), record.seed_id)
    if match is None:
        return None
    return unanswered(record.rejected("duplicate", match.rule, _detail(match), "dedup", **_named(match)))


def named_again(deduper: Deduper, rejection: Rejection) -> Rejection:
    """A duplicate found before it was answered (``Evolver.step``) named as settling finds it, in pool order: what
    it repeats is then the same whenever it was found. The index only grows, so it still matches."""
    match = deduper.check(asked(rejection.history, rejection.instruction or ""), rejection.seed_id)
    if match is None:
        return rejection
    return rejection.model_copy(update={"rule": match.rule, "detail": _detail(match), **_named(match)})


def unanswered(rejection: Rejection) -> Rejection:
    """A duplicate's rejection without its answer: whether it was answered depends on when it was found (before the
    answer when the text it repeats had been settled, else after), and the rejection must not."""
    usage = {stage: u for stage, u in rejection.usage.items() if stage not in ANSWER_STAGES}
    return rejection.model_copy(update={"output": None, "candidates": (), "cut_answers": (), "usage": usage})


def _detail(match) -> str:
    return f"duplicates {match.duplicate_of} (score {match.score:.2f})"


def _named(match) -> dict:
    return {"duplicate_of": match.duplicate_of, "score": match.score}
