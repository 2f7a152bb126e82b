"""Reading a 1-10 score out of a judge's free text: the one reader for ``evol score`` and the ranking judge.

Reasoning blocks and markdown are taken out first (``judge_reader.judge_answer``); a score only inside a reasoning
block (a model cut off mid-thought) is no score. No score is never a default: the caller gets the outcome
that says why (``Unclear``) and names it.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

from evol.models import Frozen
from evol.quality.judge_reader import judge_answer, without_reasoning
from evol.rules.refusals import refusal

#: why an answer gave no score: the judge said no number, one outside 1-10, was cut off at max_tokens, refused,
#: said nothing, was withheld by a content filter, or the call itself failed
UnclearKind = Literal["no_score", "out_of_range", "truncated", "refused", "empty", "content_filtered", "failed"]


class Unclear(Frozen):
    """A criterion the judge gave no usable score for, and why."""

    outcome: UnclearKind
    answer: str = ""  # the start of the judge's answer (or the error), so the user can see what came back


_NUM = r"(?P<n>\d{1,3}(?:[.,]\d+)?)"
# "Score: 8", "Rating - 7/10", "Final grade is 9", "Puntuación: 6", "评分：8"; the last one in the answer decides,
# and a strong label (score, rating) over a weak one ("Note: 2 parts are vague" after "Score: 8")
_STRONG = (
    r"score|rating|grade|verdict|puntuaci[oó]n|calificaci[oó]n|bewertung|punktzahl|punteggio|voto|оценка|балл|"
    r"评分|得分|分数|打分|スコア|評価|点数"
)
_WEAK = r"answer|complexity|difficulty|quality|nota|note|valutazione"


def _labelled(labels: str) -> re.Pattern:
    return re.compile(
        rf"(?<![a-z])(?:final\s+|overall\s+)?(?:{labels})\s*(?:is|est|ist|es|è|:|：|=|-|–|—)?\s*"
        rf"(?:of\s+|an?\s+)?{_NUM}(?:\s*(?:/|out\s+of|sur|von|de|su|из)\s*(?P<d>\d+))?",
        re.IGNORECASE,
    )


_LABELLED = (_labelled(_STRONG), _labelled(_WEAK))
# "8/10", "8 out of 10", "8 sur 10", "8分"
_OUT_OF = re.compile(rf"(?<![\d.,]){_NUM}\s*(?:(?:/|out\s+of|sur|von|de|su|из)\s*(?P<d>\d+)\b|分)", re.IGNORECASE)
# "I would rate it a 7", "I'd give this an 8"
_RATE = re.compile(
    rf"\b(?:rate|rated|give|gives|score|scored|assign)\s+(?:it|this|the\s+\w+)?\s*(?:an?\s+|as\s+)?{_NUM}\b",
    re.IGNORECASE,
)
_SCALE = re.compile(r"\b(?:1|one)\s*(?:-|–|to|through|and)\s*(?:10|ten)\b", re.IGNORECASE)  # "on a scale of 1 to 10"
_BARE = re.compile(rf"^\s*{_NUM}\s*[.!]?\s*$")


@dataclass(frozen=True)
class Reading:
    value: float | None
    unclear: Unclear | None


def read_score(text: str | None, finish_reason: str | None = None) -> Reading:
    """The judge's 1-10 score, or the Unclear outcome that says why there is none.

    Reasoning blocks (``<think>…</think>``) and markdown are taken out first; then the last labelled score
    ("Score: 8", "**Rating:** 7/10", "Puntuación: 6"), else the last "N/10" or "N out of 10", else "I'd rate it
    a 7", else an answer (or last line) that is only a number, else the one number a short answer holds.
    """
    raw = text or ""
    if finish_reason == "content_filter":
        return Reading(None, Unclear(outcome="content_filtered", answer=raw[:300]))
    body = judge_answer(raw)
    found = _find(body)
    if found is not None:
        if 1 <= found <= 10:
            return Reading(int(found) if found.is_integer() else found, None)
        return Reading(None, Unclear(outcome="out_of_range", answer=raw[:300]))
    return _no_score(raw, body, finish_reason)


def _no_score(raw: str, body: str, finish_reason: str | None) -> Reading:
    """Why an answer (``body``: without reasoning and markdown) holds no score."""
    outcome: UnclearKind
    if finish_reason == "length":
        outcome = "truncated"
    elif not body:
        outcome = "empty"
    elif refusal(raw) or refusal(body):  # judge_answer drops apostrophes ("I can t"), the refusal phrases have them
        outcome = "refused"
    else:
        outcome = "no_score"
    return Reading(None, Unclear(outcome=outcome, answer=raw[:300]))


def _number(m: re.Match) -> float | None:
    value = float(m.group("n").replace(",", "."))
    denominator = m.groupdict().get("d")
    if denominator is not None and int(denominator) != 10:
        return value * 10 / int(denominator) if int(denominator) in (5, 100) else None
    return value


def _find(body: str) -> float | None:
    for pattern in (*_LABELLED, _OUT_OF, _RATE):
        values = [v for v in map(_number, pattern.finditer(body)) if v is not None]
        if values:
            return values[-1]
    lines = [x for x in body.splitlines() if x.strip()]
    for candidate in (body, lines[-1] if lines else ""):
        m = _BARE.match(candidate)
        if m:
            return _number(m)
    rest = _SCALE.sub(" ", body)
    numbers = {float(x.replace(",", ".")) for x in re.findall(r"(?<![\d.,])\d{1,2}(?:[.,]\d+)?(?![\d.,]*\d)", rest)}
    if len(numbers) == 1 and len(rest.split()) <= 40:
        return numbers.pop()
    return None


# --- the ranking judge's reason, beside its score

_SCORE = re.compile(
    r"(?:^|\n)[ \t]*(?:final\s+|overall\s+)?(?:score|rating|grade)[ \t]*[:=–—-]?[ \t]*\n?[ \t]*"
    r"(?P<n>\d+(?:\.\d+)?)(?:[ \t]*(?:/|out\s+of)[ \t]*10)?(?![\d.]*\w)",
    re.IGNORECASE,
)
_ALONE = re.compile(r"^\s*(?P<n>\d+(?:\.\d+)?)(?:\s*(?:/|out\s+of)\s*10)?\s*[.!]?\s*$", re.IGNORECASE)
_OUT_OF_TEN = re.compile(r"(?<![\d.])(?P<n>\d+(?:\.\d+)?)\s*(?:/|out\s+of)\s*10\b", re.IGNORECASE)
_REASON = re.compile(
    r"(?:^|\n)[ \t]*(?:reason|reasoning|justification|explanation)[ \t]*:[ \t]*(?P<r>[^\n]*\S)", re.IGNORECASE
)
_BOLD = re.compile(r"[*_`#>]+")


def parse_rank(answer: str) -> tuple[float | None, str]:
    """(score 1-10 or None, short reason) from the ranking judge's free text: the score as ``read_score`` reads
    any judge's, the reason from a "Reason:" line, else the answer's words without the score."""
    score = read_score(answer).value
    text = _BOLD.sub("", unicodedata.normalize("NFKC", without_reasoning(answer))).strip()
    m = _REASON.search(text)
    reason = m.group("r") if m else " ".join(_SCORE.sub(" ", text).split())
    if _ALONE.match(reason) or not any(ch.isalnum() for ch in reason):
        reason = ""
    return (float(score) if score is not None else None), reason.strip()[:300]


# --- the side-by-side judge (``evol score --method evol``): one score per numbered version

# "[2] Score: 7", "2. 7/10", "Version 2: 7", "(2) - Rating: 7": a version's number, then the score read as any
_INDEXED = re.compile(
    r"^\s*(?:[-•]\s*)?[\[(]?\s*(?:version|variant|instruction|response|item|pair|no\.?)?\s*#?\s*(?P<k>\d{1,2})\s*"
    r"[\])]?\s*[.:)\-–—]?\s*(?P<rest>\S.*)$",
    re.IGNORECASE,
)
_EMPHASIS = re.compile(r"[*_`]+")


def read_scores(text: str | None, finish_reason: str | None, n: int) -> list[Reading]:
    """One Reading per version 1..n from a judge that scored ``n`` versions side by side.

    Each line that opens with a version's number ("[2] Score: 7", "2. 7/10") gives that version the score
    ``read_score`` reads from the rest of the line; the last line for a version decides. An answer with no
    numbered line but exactly ``n`` scored lines is read in order. A version with no score gets the Unclear
    outcome that says why, as one criterion of the direct judge does.
    """
    raw = text or ""
    if finish_reason == "content_filter":
        return [Reading(None, Unclear(outcome="content_filtered", answer=raw[:300]))] * n
    lines = [_EMPHASIS.sub("", x) for x in without_reasoning(raw).splitlines() if x.strip()]
    found: dict[int, float] = {}
    for line in lines:
        m = _INDEXED.match(line)
        if m and 1 <= int(m.group("k")) <= n:
            value = _find(judge_answer(m.group("rest")))
            if value is not None:
                found[int(m.group("k"))] = value
    if not found:
        in_order = [v for v in (_find(judge_answer(x)) for x in lines) if v is not None]
        if len(in_order) == n:
            found = dict(enumerate(in_order, 1))
    out = []
    for k in range(1, n + 1):
        value = found.get(k)
        if value is not None and 1 <= value <= 10:
            out.append(Reading(int(value) if value.is_integer() else value, None))
        elif value is not None:
            out.append(Reading(None, Unclear(outcome="out_of_range", answer=raw[:300])))
        else:
            out.append(_no_score(raw, judge_answer(raw), finish_reason))
    return out
