"""Reading an LLM judge's free-text answer: its reasoning blocks and markdown taken out, and the
information-gain judge's verdict (Equal / Not Equal) read from what is left.

The rule that acts on the verdict is ``evol.rules.judgement.check_judgement``; the 1-10 scores are ``score_reader``'s.
"""

from __future__ import annotations

import re
import unicodedata

from evol.models import Judgement

# reasoning models put their thinking first: a closed block, a block cut off by max_tokens, or (DeepSeek-R1's
# template opens the tag in the prompt) only the closing tag
_REASONING = re.compile(r"<(think|thinking|reasoning|reflection)>.*?(?:</\1>|$)", re.IGNORECASE | re.DOTALL)
_CLOSE_ONLY = re.compile(r"^.*</(?:think|thinking|reasoning|reflection)>", re.IGNORECASE | re.DOTALL)
_MARKDOWN = re.compile(r"[*_`#>\"“”'‘’\[\]()]+")
_NOT_EQUAL = r"not\s+(?:equal|the\s+same|equivalent|identical)|unequal|different|differ|distinct|inequal"
_EQUAL = r"equal|equivalent|identical|(?:the\s+)?same"
_SUBJECT = (
    r"(?:(?:they|both|both\s+instructions|the\s+two(?:\s+instructions)?|the\s+instructions|these"
    r"(?:\s+instructions)?|the\s+second(?:\s+instruction)?|the\s+rewritten\s+instruction)\s+(?:(?:are|is)\s+)?)?"
)
# a verdict stands on its own: the end, punctuation, or a "because" follows it, not "the same topic but ..."
_AFTER = r"(?=\s*$|\s*[.,:;!?\n–—-]|\s+(?:because|since|as|given|in\s+(?:depth|scope|meaning|content)|to\s+each))"
_HEDGE = r"(?:(?:i\s+(?:think|believe|would\s+say|judge)(?:\s+that)?|in\s+my\s+(?:view|opinion)|my\s+(?:answer|verdict)\s+is)[\s,:]+)?"
_LEADING = re.compile(rf"^\s*{_HEDGE}{_SUBJECT}(?:(?P<ne>{_NOT_EQUAL})|(?P<eq>{_EQUAL})){_AFTER}", re.IGNORECASE)
_MARKER = re.compile(
    r"(?:^|\n)[ \t]*(?:final\s+)?(?:verdict|answer|judge?ment|decision|conclusion)[ \t]*[:=–—-]?[ \t]*"
    r"\n?[ \t]*(?P<rest>[^\n]*\S[^\n]*)",
    re.IGNORECASE,
)
_CONNECTOR = re.compile(
    r"^\s*(?:so|thus|hence|therefore|overall|in\s+(?:conclusion|summary|short))[\s,:]+", re.IGNORECASE
)
# "..., so they are not equal." closing a model's reasoning aloud
_CLOSING = re.compile(
    rf"(?:[,;:]|\b(?:so|thus|hence|therefore))\s+{_SUBJECT}(?:(?P<ne>{_NOT_EQUAL})|(?P<eq>{_EQUAL}))"
    r"(?:\s+to\s+each\s+other)?\s*[.!]*\s*$",
    re.IGNORECASE,
)


def without_reasoning(answer: str) -> str:
    """A judge's answer with its reasoning blocks taken out (closed, cut off, or only the closing tag)."""
    return _CLOSE_ONLY.sub(" ", _REASONING.sub(" ", answer))


def judge_answer(answer: str) -> str:
    """What of the judge's answer carries the verdict: reasoning blocks and markdown taken out."""
    return _MARKDOWN.sub(" ", unicodedata.normalize("NFKC", without_reasoning(answer))).strip()


def _leading(text: str) -> Judgement | None:
    m = _LEADING.match(text)
    if m is None:
        return None
    return "not_equal" if m.group("ne") else "equal"


def parse_judgement(answer: str) -> Judgement:
    """'equal', 'not_equal' or 'unclear' from the judge's free text.

    The verdict is read, in this order, from a last "Verdict:"/"Answer:" line, from the answer's opening
    words ("Equal. Only the wording differs." is equal), or from a last sentence that opens or closes with
    one (a model that reasons aloud first); words inside an explanation or a reasoning block never decide.
    """
    text = judge_answer(answer)
    if not text:
        return "unclear"
    for m in reversed(list(_MARKER.finditer(text))):
        verdict = _leading(_CONNECTOR.sub("", m.group("rest")))
        if verdict:
            return verdict
    verdict = _leading(text)
    if verdict:
        return verdict
    sentences = [x for x in re.split(r"(?<=[.!?])\s+|\n+", text) if x.strip(" .!?")]
    if sentences:
        last = sentences[-1]
        verdict = _leading(_CONNECTOR.sub("", last))
        if verdict:
            return verdict
        closing = _CLOSING.search(last)
        if closing is not None:
            return "not_equal" if closing.group("ne") else "equal"
    return "unclear"


_FOLLOW_UP = re.compile(r"\b(?P<builds>builds?\s+on|building\s+on)\b|\b(?P<ignores>ignores?|ignoring)\b", re.IGNORECASE)


def parse_follow_up(answer: str) -> Judgement:
    """'builds', 'ignores' or 'unclear' from the follow-up judge's free text: the verdict its last line (or, failing
    that, its opening) names; reasoning blocks never decide, and an answer naming both in one line is unclear."""
    lines = [ln for ln in judge_answer(answer).splitlines() if ln.strip()]
    for line in (lines[-1:] + lines[:1]) if lines else []:
        found = {k for m in _FOLLOW_UP.finditer(line) for k, v in m.groupdict().items() if v}
        if len(found) == 1:
            return "builds" if found == {"builds"} else "ignores"
    return "unclear"
