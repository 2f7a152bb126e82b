"""The rules of a conversation's follow-up turn (``--turns``): it must not ask again what the conversation asked,
and it must build on the answer before it. Every other rule reads a turn as it reads a single instruction."""

from __future__ import annotations

from collections.abc import Iterable

from rapidfuzz import fuzz

from evol.models import Judgement, Verdict
from evol.rules import judgement as judges
from evol.rules.rule import Rule
from evol.text import normalize

REPEATED_TURN = Rule(
    ("repeated_turn",),
    "a follow-up turn (`--turns` above 1) asks again what an earlier user turn of its conversation asked: the same "
    "text after folding case, punctuation and spaces, or a near copy (similarity 0.9 and above)",
)
IGNORED_ANSWER = Rule(
    ("ignored_answer",),
    "the follow-up judge finds that a follow-up turn does not build on the answer before it: a request that stands "
    "on its own, changes the subject or asks again; an unreadable verdict is `judge_unclear`'s, as the equality "
    "judge's is",
)

#: rapidfuzz's ratio (0-100) from which a turn is a near copy of an earlier one
NEAR_COPY = 90.0


def repeated_turn(text: str, earlier: Iterable[str]) -> Verdict:
    """Drop a follow-up turn that repeats an earlier user turn of its conversation."""
    mine = normalize(text)
    for n, turn in enumerate(earlier, 1):
        theirs = normalize(turn)
        if mine == theirs or fuzz.ratio(mine, theirs) >= NEAR_COPY:
            return Verdict.drop(REPEATED_TURN.name, f"the follow-up repeats user turn {n} of its conversation")
    return Verdict.ok()


def check_follow_up(judgement: Judgement | str, keep_unclear: bool = False, enabled=lambda rule: True) -> Verdict:
    """Drop a follow-up turn the judge says ignores the previous answer, or (unless kept) gave no verdict for."""
    if judgement == "ignores" and enabled(IGNORED_ANSWER.name):
        return Verdict.drop(IGNORED_ANSWER.name, "the follow-up judge found the turn ignores the previous answer")
    if judgement == "unclear" and enabled(judges.JUDGE_UNCLEAR.name) and not keep_unclear:
        return Verdict.drop(
            judges.JUDGE_UNCLEAR.name,
            "the follow-up judge's answer read neither as Builds on nor as Ignores, on the retry either",
        )
    return Verdict.ok()
