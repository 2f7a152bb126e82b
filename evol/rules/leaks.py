"""What of the evolving prompt an evolution must not carry (``prompt_leak``), in the forms real models write it.

Models echo the prompt's scaffolding in words other than the template's: section markers ("#Rewritten Test#",
"#Given Test#", "#Erroneous Code Reference#"), labels ("Updated Prompt:", "New Question:", "Revised instruction:"),
references to what they rewrote ("the given test", "the original question"), the original and the rewrite
both in one answer, and spans of the prompt's own instructions ("add no more than 20 words to the original").
A leading label is taken off before any check (``wrappers.unwrap``); what is found here is left inside. Whatever
the parent already says is no signal: a seed about markdown headings, or one that says "the given array".
``find_lost_input`` reads the same references the other way, for ``lost_input``: a rewrite that names an input it
no longer carries.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from rapidfuzz import fuzz

from evol.rules.response import STOPWORDS
from evol.rules.wrappers import REWRITE_NOUNS
from evol.text import normalize, words

#: the words a model names its rewrite (or the original) with, before the thing it names
ADJECTIVES = (
    "rewritten",
    "given",
    "original",
    "updated",
    "new",
    "revised",
    "modified",
    "improved",
    "evolved",
    "harder",
    "more difficult",
    "more challenging",
    "more complex",
    "final",
    "created",
    "increased difficulty",
    "erroneous code",
)
#: ... and the things: what a prompt calls what it asks for, and the reference code a misdirection adds
NOUNS = (*REWRITE_NOUNS, "reference")
_ADJ = "|".join(sorted(map(re.escape, ADJECTIVES), key=len, reverse=True))
_NOUN = "|".join(NOUNS)
# a line that is a section marker: "#Rewritten Test#", "**#Given Prompt#:**", "#Erroneous Code Reference#"
# (no space inside its hashes, so a closed markdown heading "## Results ##" is not one)
_MARKER = re.compile(r"^[ \t>*_]*(#[^\s#][^#\n]{0,58}[^\s#]#|#[^\s#]#)[ \t*_]*:?[ \t*_]*", re.MULTILINE)
# a line that opens with "#" glued to a capitalised word and goes on in words: "#The given subject and …"
# (preprocessor lines "#include <x>", "#define N" are lower case; a markdown heading has a space after "#")
_STRAY = re.compile(r"^[ \t>*_]*#[A-Z][a-z]+(?:[ \t]+[A-Za-z][\w'-]*){2}", re.MULTILINE)
# a label line: "Rewritten Test:", "**Updated Prompt:**", "New Question 2:" (alone, or before the text)
_LABEL = re.compile(
    rf"^[ \t>*_#]*((?:{_ADJ})[ \t]+(?:{_NOUN})(?:[ \t]*\d+)?)[ \t*_]*[:：]", re.IGNORECASE | re.MULTILINE
)
# "the given test", "the original question", "the rewritten prompt" in the running text
_REFERENCE = re.compile(
    rf"\b(?:the|this|that|your|above|previous)\s+(?:given|original|rewritten|above|previous|old)\s+(?:{_NOUN})\b",
    re.IGNORECASE,
)
#: words in a row shared with the evolving prompt's own text that make a template echo. ``python -m bench.echo``:
#: over 7,125 (seed task text, template) pairs, 3 words in a row give 6 false hits and 4 or more none; the
#: embedded model's echo of the quick start ("… add no more than 20 words to the original") is caught up to 5 and
#: missed from 6. 5 keeps one word of margin over the shortest run with no false hit, for text unlike the seeds.
ECHO_WORDS = 5


def find_marker(text: str, parent: str) -> str | None:
    """A section marker, stray "#Heading" line or label line inside ``text`` that its parent does not have."""
    parent_low = parent.casefold()
    for pattern in (_MARKER, _STRAY, _LABEL):
        for m in pattern.finditer(text):
            found = (m.group(1) if pattern.groups else m.group(0)).strip(" \t>*_")
            if found.casefold() not in parent_low:
                return found
    return None


# "this prompt", "your prompt": the template's word for what it rewrites, which a seed about prompts says itself
_PROMPT = re.compile(r"\b(?:this|that|your|the|my)\s+prompt\b", re.IGNORECASE)
# "this question", "the passage below" in a rewrite with nowhere to hold the question or the passage: the input the
# instruction names was lost (the answer can only guess it)
_DANGLING = re.compile(
    r"\b(?:this|that|the following|the above|the below|the given)\s+(?:question|passage|text|paragraph|sentence|"
    r"code|snippet|table|list|article|data|poem|story|email|document)\b",
    re.IGNORECASE,
)
# "a given stereotype", "this sentence": what a parent's instruction names before the input that follows it
_NAMED_INPUT = re.compile(r"\b(?:the given|a given|this|that|the following|the above|the below)\s+([a-z]{3,})\b", re.I)
# a quoted span: an instruction may quote such words to ask about them
_QUOTED = re.compile(r'"[^"\n]*"|\u201c[^\u201d\n]*\u201d|\u00ab[^\u00bb\n]*\u00bb')


def find_reference(text: str, parent: str) -> str | None:
    """A reference to the instruction being rewritten ("the given test", "this prompt"), which a self-contained one
    never makes; words in quotation marks are quoted, not said."""
    parent_low = parent.casefold()
    said = _QUOTED.sub(lambda q: " " * len(q.group(0)), text)
    for m in _REFERENCE.finditer(said):
        if m.group(0).casefold() not in parent_low:
            return m.group(0)
    prompt = _PROMPT.search(said)
    if prompt and "prompt" not in parent_low:
        return prompt.group(0)
    return None


def find_lost_input(text: str, parent: str) -> str | None:
    """What shows, in words, that a rewrite lost the input its parent carried: it names an input it does not
    include ("How do you answer this question in a job interview?" once the question was dropped, "a given
    stereotype" once the stereotype was), or it is that input alone, without the instruction, or the instruction
    alone, without the input. One the parent left dangling the same way is the parent's."""
    head, _, given = parent.strip().partition("\n")
    said, data, order = normalize(text), normalize(given), normalize(head)
    # near the input, and no longer than it with half the instruction: an instruction and its input would be
    if data and fuzz.ratio(said, data) >= 90 and len(said) < len(data) + len(order) / 2:
        return "the rewrite is only its parent's input, without the instruction"
    named = _named_input(text, parent, head, given)
    if named:
        return named
    # and the other way: near the instruction line, with no room for the input after it (the embedded model's
    # "Given a description of the symptom, … suggest a medicine." without the parent's "I have a fever …")
    if data and fuzz.ratio(said, order) >= 90 and len(said) < len(order) + len(data) / 2:
        return "the rewrite is only its parent's instruction, without the input it carried"
    return None


def _named_input(text: str, parent: str, head: str, given: str) -> str | None:
    """A reference in ``text`` to an input that nothing in it could be, unless the parent dangled it too."""
    if not _dangles(text):
        return None
    parent_dangles = {m.group(0).casefold() for m in _DANGLING.finditer(parent)} if _dangles(parent) else set()
    for m in _DANGLING.finditer(text):
        if m.group(0).casefold() not in parent_dangles:
            return f"names an input it does not include ('{m.group(0)}')"
    if given.strip():  # the parent carried an input after its instruction: "the given stereotype" was in it
        named = set(words(head))
        for m in _NAMED_INPUT.finditer(text):
            if m.group(1).casefold() in named:
                return f"names an input it does not include ('{m.group(0)}')"
    return None


def _dangles(text: str) -> bool:
    """Nothing in ``text`` could be the input a reference names, before or after it: one paragraph with no colon, no
    line break and no quotation mark (an input an instruction carries comes after one of these)."""
    return not re.search(r"[:：\n\"`“«]", text)


def find_echo(text: str, prompt: str, parent: str, n: int | None = None) -> str | None:
    """A run of ``n`` words of the evolving prompt's own text (the prompt without the parent in it) that ``text``
    repeats and the parent does not say; runs of stop words only are common English, not an echo."""
    n = n or ECHO_WORDS
    if not prompt:
        return None
    template = set(_runs(words(prompt.replace(parent, "\n")), n)) - set(_runs(words(parent), n))
    for run in _runs(words(text), n):
        if run in template and not all(w in STOPWORDS or w.isdigit() for w in run):
            return " ".join(run)
    return None


def _runs(ws: list[str], n: int) -> list[tuple[str, ...]]:
    """Every ``n`` words in a row, in order."""
    return [tuple(ws[i : i + n]) for i in range(len(ws) - n + 1)]


def find_leak(text: str, phrases: Iterable[str], parent: str = "") -> str | None:
    """The first phrase of the evolving prompt that the text repeats and its parent did not already say."""
    low, parent_low = text.casefold(), parent.casefold()
    for phrase in phrases:
        p = phrase.casefold()
        if p in low and p not in parent_low:  # "the given prompt" in a seed is the seed's own wording
            return phrase
    return None
