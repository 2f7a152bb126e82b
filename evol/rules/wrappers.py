"""Chatter around a rewrite: "Sure! Here's a harder version:", "**Rewritten Prompt:**", "Let me know if …".

Chat models wrap the rewrite they were asked for in an introduction, a label, quotes or a code fence, and
sometimes a closing remark about what they changed. ``unwrap`` takes such layers off when what is left is
a clean instruction, and says what it took off (for the audit trail), or names the problem when chatter
is left inside: several versions offered, or an explanation of the changes besides the rewrite.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

from evol.models import Frozen

#: what any prompt calls the thing it asks for, whatever the profile's own word: "Updated Test:", "New Question:"
REWRITE_NOUNS = ("prompt", "test", "question", "instruction", "problem", "task", "exercise", "query", "version")
# what a rewrite is called in chatter about it, whatever the profile
_NOUNS = (
    "version",
    "rewrite",
    "revision",
    "variant",
    "variation",
    "prompt",
    "instruction",
    "question",
    "problem",
    "task",
    "exercise",
    "challenge",
    "attempt",
    "take",
    "one",
    "option",
    "alternative",
)
_ADJECTIVES = (
    "a",
    "an",
    "the",
    "my",
    "your",
    "one",
    "this",
    "slightly",
    "much",
    "bit",
    "little",
    "more",
    "most",
    "even",
    "rewritten",
    "revised",
    "new",
    "harder",
    "tougher",
    "challenging",
    "difficult",
    "complex",
    "complicated",
    "advanced",
    "evolved",
    "modified",
    "updated",
    "improved",
    "refined",
    "enhanced",
    "rarer",
    "different",
    "fresh",
    "brand-new",
    "brand new",
    "creative",
    "sophisticated",
    "detailed",
    "specific",
    "concrete",
    "deeper",
    "possible",
    "alternative",
    "nuanced",
    "demanding",
    "intricate",
    "elaborate",
    "in-depth",
    "final",
    "mutated",
    "created",
    "resulting",
    "reworded",
    "rephrased",
    "edited",
    "extended",
    "expanded",
    "two",
    "three",
    "several",
    "few",
    "some",
    "another",
)
_AFFIRM = (
    r"(?:sure|certainly|of course|absolutely|okay|ok|alright|all right|great|no problem|gladly|yes|got it|"
    r"understood|happy to help|good idea)(?:\s+thing)?(?:[!.,:]+\s*|\s*$)"
    r"(?:(?:i'd|i would|i'll|i will|i can|i'm|i am|let me|i've|here goes)\b[^.!:\n]{0,80}[.!]\s*)?"
)
_ANNOUNCE = (
    r"(?:here(?:'s| is| are)|below (?:is|are)|this is|the following is|i've (?:\w+ ){0,2}|"
    r"i have (?:\w+ ){0,2}|let me (?:\w+ ){0,3}|let's (?:\w+ ){0,2}|i'd (?:\w+ ){0,3}|i would (?:\w+ ){0,3})"
)
_ORIGINAL = (
    r"(?:(?:of|for|on) (?:the|your|this|that) (?:original |given |above |previous )?"
    r"(?:prompt|instruction|question|problem|one|task|exercise|request)|(?:of|on) it)"
)
# what a model says of its rewrite before the colon: "… of the instruction with a hint:", "… that challenges your
# skills:", "… with only the requested 10 words:" (one clause, on the introduction's line)
_QUALIFIED = r"(?:\s+(?:with|that|which|where|using|in|for)\b[^\n.!?:：]{1,80})"


@functools.lru_cache(maxsize=64)  # one per profile: unwrap runs for every evolution
def _intro(nouns: str) -> re.Pattern[str]:
    """An announcement that ends in a colon: "Sure! Here's a harder version:", "A tougher problem could be:"."""
    named = rf"(?:(?:{'|'.join(map(re.escape, _ADJECTIVES))})\s+){{0,5}}(?:{nouns})s?\b(?:\s+{_ORIGINAL})?"
    return re.compile(
        rf"(?:{_AFFIRM})?(?:(?:{_ANNOUNCE})\s*(?:{named}{_QUALIFIED}?|you go|it is|goes)|{named}\s+(?:(?:could|would|might|can) be|is|reads|follows|goes))"
        rf"(?:\s+(?:as follows|like this|below))?\s*[:：]\s*",
        re.IGNORECASE,
    )


# a bare "Sure!" or "Certainly, happy to help." before the rewrite
_AFFIRM_ONLY = re.compile(rf"(?:{_AFFIRM})(?=\S)|(?:{_AFFIRM})$", re.IGNORECASE)
# the rewrite named with a word that marks it as the model's own (a bare "The task requires …" is the
# instruction talking about its task, not a remark about the rewrite)
_SELF = (
    r"(?:this|the|my) (?:(?:new|revised|rewritten|updated|modified|evolved|harder|tougher|final|more \w+) "
    r"(?:version|rewrite|prompt|instruction|question|problem|task|exercise)|version|rewrite|revision)"
)
_OUTRO = re.compile(
    rf"(?:{_SELF}\s+(?:now\s+)?"
    r"(?:adds|introduces|requires|makes|increases|asks|keeps|builds|includes|incorporates|raises|deepens|expands|"
    r"focuses|challenges|retains|maintains|preserves|still|tests|demands|encourages|shifts|narrows|broadens|"
    r"replaces|combines|is (?:harder|more|now|slightly))"
    r"|(?:i've|i have|i) (?:added|introduced|included|made|increased|kept|replaced|changed|modified|rewritten|"
    r"expanded|specified|incorporated|combined|adjusted|tweaked)\b"
    r"|let me know|feel free to (?:ask|let|adjust|modify|tweak|reach|change)|i hope|hope this|"
    r"if you(?:'d| would) (?:like|prefer)|if you want me|would you like|do you want me|shall i|want me to|"
    r"happy to (?:adjust|help|tweak|modify|change))",
    re.IGNORECASE,
)
# "Explanation:" may be part of an answer format an instruction asks for; after chatter it is the model's own
_EXPLANATION_LABEL = re.compile(
    r"^[\s*_#>-]*(?:(?P<always>changes(?: made)?|what changed|key changes|summary of changes|"
    r"why (?:it's|this is) harder)|explanation|rationale)\b[*_ ]*[:：]",
    re.IGNORECASE | re.MULTILINE,
)
# an "Explanation:" that talks about a rewrite, not about the answer it asks for
_ABOUT_CHANGES = re.compile(
    r"\b(?:i (?:added|introduced|changed|made|kept|replaced|removed)|this version|the original|"
    r"the rewrite|harder|more (?:challenging|difficult|complex))\b",
    re.IGNORECASE,
)
_ALTERNATIVE = re.compile(
    r"^[\s*_#>-]*(?:(?:version|variant|alternative|rewrite|option|prompt|instruction|question|problem)"
    r"\s*#?\s*(?:2|two|b|ii)\b|(?:or|alternatively|(?:(?:here's|here is|and)\s+)?another (?:version|option|variant|possibility|"
    r"alternative|take))\b[^\n]{0,60}[:：]\s*$)",
    re.IGNORECASE | re.MULTILINE,
)
_QUOTES = (('"', '"'), ("\u201c", "\u201d"), ("'", "'"), ("\u00ab", "\u00bb"), ("\u300c", "\u300d"))
_FENCE = re.compile(
    r"\A```[ \t]*(?:text|markdown|md|plaintext|plain|txt|prompt)?[ \t]*\n(.*?)\n[ \t]*```\Z", re.DOTALL | re.IGNORECASE
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=\S)")
# what a remark never holds: facts of its own after a colon ("…about my background: I have 5 years in SQL.")
_HAS_CONTENT = re.compile(r"[:：]\s*\S+(?:\s+\S+){2,}")
# an introduction inside the text is chatter when it names the rewrite as the model's own ("Here's a harder
# version:"); "Here is the problem:" before the data an instruction works on is the instruction's own
_OWN = re.compile(
    r"\b(?:harder|tougher|rewritten|revised|new|updated|modified|evolved|improved|another|more (?:challenging|"
    r"difficult|complex|advanced)|challenging|version|rewrite|revision|variant|variation|alternative|option)\b",
    re.IGNORECASE,
)
_MAX_OUTRO_WORDS = 60  # a closing remark; a longer trailing paragraph is an explanation, not a remark


class Unwrapped(Frozen):
    """A rewrite with its wrappers taken off: what is left, what was taken, and what could not be."""

    text: str
    stripped: tuple[str, ...] = ()
    problem: str | None = None


def label_pattern(labels: Iterable[str], nouns: Iterable[str]) -> re.Pattern[str]:
    """A label line such as "#Rewritten Prompt#:", "**New problem:**" or "Rewritten question:" at the start."""
    return _label_pattern(tuple(labels), tuple(nouns))


@functools.lru_cache(maxsize=64)  # one per profile: unwrap runs for every evolution
def _label_pattern(labels: tuple[str, ...], nouns: tuple[str, ...]) -> re.Pattern[str]:
    names = sorted(
        {*(re.escape(lab) for lab in labels), *(re.escape(n) for n in (*nouns, "version"))}, key=len, reverse=True
    )
    adjectives = (
        r"(?:new|rewritten|revised|evolved|harder|modified|updated|improved|final|created|refined|resulting|"
        r"more (?:challenging|difficult|complex|advanced)|challenging|complex|evolved)"
    )
    # what any profile's rewrite may be called, after a word that marks it as the rewrite ("Updated Test:",
    # "Revised instruction:"); bare ("Task:", "Question:") such a word may be the instruction's own
    named = rf"(?:{'|'.join(REWRITE_NOUNS)})"
    name = rf"(?:(?:{adjectives}\s+)?(?:{'|'.join(names)})|{adjectives}\s+{named})(?:\s*\d+)?"
    # "#Rewritten Prompt#" needs no colon (the template's own marker); a plain word does
    return re.compile(rf"[*_>\s]*(?:#\s*{name}\s*#\s*[:：]?|#*\s*{name}\s*[*_]*\s*[:：])[*_]*\s*", re.IGNORECASE)


def unwrap(
    text: str,
    labels: Iterable[str] = ("rewritten prompt", "created prompt"),
    nouns: Iterable[str] = ("prompt", "instruction", "question", "problem"),
    parent: str = "",
) -> Unwrapped:
    """Take a rewrite's wrappers off, layer by layer; ``labels``/``nouns`` come from the profile's templates. An
    opening the parent itself has ("Alright, here is a question for you: …") is the instruction's own, not chatter."""
    label = label_pattern(labels, nouns)
    intro = _intro("|".join(sorted({*_NOUNS, *map(re.escape, nouns)}, key=len, reverse=True)))
    stripped: list[str] = []
    body = text.strip()
    own = parent.strip()
    for _ in range(6):  # layers: "Sure!\n\n**Rewritten:**\n```\n…\n```\n\nLet me know…"
        before = body
        body = _strip_head(body, label, stripped, own)
        body = _strip_head(body, intro, stripped, own)
        body = _strip_head(body, _AFFIRM_ONLY, stripped, own)
        body = _strip_outro(body, stripped)
        body = _strip_enclosure(body, stripped)
        if body == before:
            break
    return Unwrapped(
        text=body,
        stripped=tuple(stripped),
        problem=_problem(body, intro, bool(stripped))
        if body
        else ("only chatter came back, no rewrite" if stripped else None),
    )


def strip_heading(text: str, labels: Iterable[str], nouns: Iterable[str]) -> tuple[str, tuple[str, ...]]:
    """Only the introduction and label lines before a text ("Sure! Here's a more detailed answer:",
    "**Improved answer:**"), and what was taken: fences, quotes and closing lines may belong to an answer."""
    label, intro = (
        label_pattern(labels, nouns),
        _intro("|".join(sorted({*_NOUNS, *map(re.escape, nouns)}, key=len, reverse=True))),
    )
    stripped: list[str] = []
    body = text.strip()
    for _ in range(3):
        before = body
        body = _strip_head(_strip_head(_strip_head(body, label, stripped), intro, stripped), _AFFIRM_ONLY, stripped)
        if body == before:
            break
    return body, tuple(stripped)


def _strip_head(body: str, pattern: re.Pattern[str], stripped: list[str], own: str = "") -> str:
    m = pattern.match(body)
    if not m or not m.group(0).strip() or (own and own.startswith(m.group(0).strip())):
        return body  # nothing, or an opening the parent itself has: the instruction's own words
    stripped.append(m.group(0).strip())
    return body[m.end() :].strip()


def _is_remark(text: str) -> bool:
    """A closing remark about the rewrite ("Let me know if you'd like changes."), not a last part of the instruction
    that happens to open the same way ("Let me know if you need details about my background: I have 5 years…")."""
    return bool(_OUTRO.match(text.lstrip("*_>-# "))) and not _HAS_CONTENT.search(text)


def _strip_outro(body: str, stripped: list[str]) -> str:
    paragraphs = re.split(r"\n\s*\n", body)
    last = paragraphs[-1].strip()
    if len(paragraphs) > 1 and _is_remark(last) and len(last.split()) <= _MAX_OUTRO_WORDS:
        stripped.append(last)
        return "\n\n".join(paragraphs[:-1]).strip()
    # a remark run on after the rewrite's last sentence: "… in 14 lines. This version adds a rhyme scheme."
    sentences = _SENTENCE.split(last)
    for i in range(1, len(sentences)):
        tail = " ".join(sentences[i:])
        if _is_remark(sentences[i]) and len(tail.split()) <= _MAX_OUTRO_WORDS and "\n" not in tail:
            stripped.append(tail)
            return "\n\n".join([*paragraphs[:-1], " ".join(sentences[:i])]).strip()
    return body


def _strip_enclosure(body: str, stripped: list[str]) -> str:
    m = _FENCE.match(body)
    if m and "```" not in m.group(1):
        stripped.append("```")
        return m.group(1).strip()
    for left, right in _QUOTES:
        inner = body[len(left) : -len(right)] if len(body) > 2 else ""
        if (
            body.startswith(left)
            and body.endswith(right)
            and left not in inner
            and right not in inner
            and inner.strip()
        ):
            stripped.append(left + right)
            return inner.strip()
    lines = body.splitlines()
    if len(lines) > 0 and all(line.startswith(">") for line in lines if line.strip()):
        stripped.append(">")
        return "\n".join(line[1:].lstrip() if line.startswith(">") else line for line in lines).strip()
    return body


def _problem(body: str, intro: re.Pattern[str], wrapped: bool) -> str | None:
    if _OUTRO.match(body):
        return "the reply explains changes instead of giving the rewrite"
    explanation = _EXPLANATION_LABEL.search(body)
    if explanation and (
        wrapped
        or explanation.group("always")
        or _ABOUT_CHANGES.search(body, explanation.end(), explanation.end() + 300)
    ):
        return "an explanation of the changes is left in the rewrite"
    alternative = _ALTERNATIVE.search(body)
    if alternative and (
        wrapped or not alternative.group(0).strip().lower().startswith(("option", "question", "problem"))
    ):
        return f"several versions are offered ('{alternative.group(0).strip()}')"
    for line in body.splitlines()[1:]:
        line = line.strip().lstrip("*_#>- ")
        m = intro.match(line) if line else None
        if m and _OWN.search(m.group(0)):
            return f"chatter is left inside the rewrite ('{line[:60]}')"
        if line and _is_remark(line):
            return f"a remark about the rewrite is left inside it ('{line[:60]}')"
    return None
