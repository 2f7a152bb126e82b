"""The judges' rules: the equality judge found no gain or gave no verdict; the ranking judge scored nothing.

Their answers are read in ``evol.quality``; these rules decide on what was read.
"""

from __future__ import annotations

from evol.models import Judgement, Verdict
from evol.rules.rule import Rule

NO_INFORMATION_GAIN = Rule(
    ("no_information_gain",),
    "an LLM judge finds the evolution *Equal* to its parent (same constraints, same depth and breadth)",
)
JUDGE_UNCLEAR = Rule(
    ("judge_unclear",),
    "the judge's answer reads as neither *Equal* nor *Not Equal* (empty, off-script, or cut off mid-thought), again on one retry; `--keep-judge-unclear` keeps such evolutions instead",
)
RANK_UNCLEAR = Rule(
    ("rank_unclear",),
    "with several candidate answers (`--answers`, `--evolve-answers`), the ranking judge gave no readable 1-10 score to any of them, again on one retry each; switched off, the first candidate that passed becomes the output, unranked",
)


def check_judgement(judgement: Judgement | str, enabled=lambda rule: True, keep_unclear: bool = False) -> Verdict:
    if enabled(NO_INFORMATION_GAIN.name) and judgement == "equal":
        return Verdict.drop(NO_INFORMATION_GAIN.name, "the judge found the evolution equal to its parent")
    if judgement == "unclear" and enabled(JUDGE_UNCLEAR.name) and not keep_unclear:
        return Verdict.drop(
            JUDGE_UNCLEAR.name, "the judge's answer read neither as Equal nor as Not Equal, on the retry either"
        )
    return Verdict.ok()


def check_ranking(scored: int, enabled=lambda rule: True) -> Verdict:
    """The ranking judge must have read at least one candidate, or the choice of output is a guess."""
    if scored == 0 and enabled(RANK_UNCLEAR.name):
        return Verdict.drop(
            RANK_UNCLEAR.name, "the ranking judge gave no readable score to any candidate, on the retry either"
        )
    return Verdict.ok()
