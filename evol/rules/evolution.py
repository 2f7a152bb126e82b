"""The evolution rules: each looks at one rewrite of an instruction and keeps it or drops it under a named rule.

``check_evolution`` runs them in order, cheapest first, once ``unwrap`` took off the chatter that can be taken off;
``check_final`` is the structured answer's (the ``auto`` profile's final section).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from evol.models import Verdict
from evol.rules.endpoint import content_filtered
from evol.rules.languages import language_change
from evol.rules.leaks import find_echo, find_leak, find_lost_input, find_marker, find_reference
from evol.rules.refusals import refusal
from evol.rules.rule import Rule
from evol.rules.wrappers import Unwrapped
from evol.text import normalize

EMPTY = Rule(("empty_evolution",), "the evolving model returned nothing")
TRUNCATED = Rule(("truncated_evolution",), "the evolving model stopped at `max_tokens` (`finish_reason=length`)")
REFUSED = Rule(
    ("refused_evolution",),
    'the evolving model refused instead of rewriting: the rewrite *opens* with "I\'m sorry, but I can\'t…", "I cannot create…", "As an AI language model, I…", "I\'m unable to…", "I won\'t…" or the same in the languages above; an instruction that quotes a refusal or asks about one ("Explain why a program says \'I\'m sorry\'"), a user\'s own "I can\'t get my code to run", and a phrase the parent already contains are kept',
)
WRAPPED = Rule(
    ("wrapped_evolution",),
    'the rewrite comes with chatter that cannot be taken off: several versions offered ("Option 2:", "Here\'s another version:"), an explanation of the changes ("Changes made:", "Explanation: I added…"), only an introduction and no rewrite, or chatter left inside. Chatter that *can* be taken off is stripped before any check, and kept in the row\'s `stripped` field for an audit: an introduction ("Sure! Here\'s a more challenging version of the prompt:", "Certainly. A harder version could be:"), a label from the profile\'s own templates ("**Rewritten Prompt:**", "New question:", "New problem:"), surrounding quotes, a code fence or a block quote, and a closing remark ("This version adds…", "Let me know if you\'d like…")',
)
IDENTICAL_TO_PARENT = Rule(
    ("identical_to_parent",), "the evolution is its parent again (after folding case, punctuation and spaces)"
)
PROMPT_LEAK = Rule(
    ("prompt_leak",),
    "the evolution carries what the evolving prompt wrote and its parent does not say: the profile's own section "
    'markers ("#Rewritten Prompt#") and the phrases its templates forbid by name ("given prompt", …); a section marker '
    'in any words on a line of its own ("#Rewritten Test#", "#Given Test#", "#Erroneous Code Reference#") or a stray '
    '"#Heading" line; a label line inside the text ("Rewritten Test:", "**New Question:**"), so also the original '
    'and the rewrite in one answer; a reference to the instruction it rewrites ("the given test", "the original '
    'question", not in quotation marks); or five words in a row of the prompt\'s own instructions ("add no more than '
    '20 words to the original"). A leading label in those words is taken off instead; markdown headings, `#include` '
    'lines and "the given array" are kept',
)
SCRIPT_CHANGED = Rule(
    ("script_changed",),
    "the evolution is written in another script than its parent (Latin, Cyrillic, Han, …): the evolving model answered in another language; switch it off for seeds meant to be translated",
)
LANGUAGE_CHANGED = Rule(
    ("language_changed",),
    "the evolution is written in another language than its parent in the same script (English to French, Spanish "
    "to Portuguese, Russian to Ukrainian, Chinese to Japanese): every paragraph of prose identified with confidence "
    "is in the other language. Code, quoted text, lists of names and short paragraphs do not count, so an English "
    "instruction to translate a French passage is kept; switch it off (and `script_changed`) for seeds meant to be "
    "translated",
)
TOO_LONG = Rule(
    ("too_long",),
    "the evolution is longer than `max_instruction_chars` (default 20,000 characters): a runaway rewrite, not a harder instruction",
)
LOST_INPUT = Rule(
    ("lost_input",),
    'the rewrite names an input it does not include: "this question", "the passage below", "the given table" in one '
    "paragraph with no colon, line break or quotation mark to hold it (Auto Evol-Instruct's loss of key "
    "information: the parent carried its input, the rewrite dropped it), or that is only the parent's input without "
    "its instruction, or only its instruction without the input after it; a parent that itself names an input it does not give is no signal",
)
META_COMMENTARY = Rule(
    ("meta_commentary",),
    'the evolving model talked about the instruction instead of writing one: "The new instruction is indeed quite '
    'challenging…", "To make it harder, add…", "How to make it harder: …", "The rewritten prompt asks…", "Your '
    'instructions are already challenging!", "If you want to make the original more difficult…"; an instruction that '
    "is about instructions and says so in its parent's words is kept",
)
NO_FINAL_INSTRUCTION = Rule(
    ("no_final_instruction",),
    'an operation with an `extract` marker (the `auto` profile) got an answer without that final section: only the text after its last "#Final Instruction#" heading is the evolution',
)


def check_evolution(
    text: str,
    finish_reason: str | None,
    parent: str,
    leak_phrases: Iterable[str],
    enabled=lambda rule: True,
    wrapping: Unwrapped | None = None,
    max_chars: int | None = None,
    prompt: str = "",
) -> Verdict:
    """The rules that need no extra LLM call, cheapest first; ``wrapping`` is what ``unwrap`` made of it,
    ``max_chars`` the longest evolution that is not a runaway (``too_long``), ``prompt`` the evolving prompt that
    was sent (whose own wording the evolution must not repeat)."""
    filtered = content_filtered(finish_reason, "the evolution", enabled)
    if filtered is not None:
        return filtered
    if not text.strip() and wrapping is not None and wrapping.problem and enabled(WRAPPED.name):
        return Verdict.drop(WRAPPED.name, wrapping.problem)
    if enabled(EMPTY.name) and not text.strip():
        return Verdict.drop(EMPTY.name, "the evolving model returned no text")
    if enabled(TRUNCATED.name) and finish_reason == "length":
        return Verdict.drop(TRUNCATED.name, "the evolution hit max_tokens (finish_reason=length)")
    if enabled(REFUSED.name):
        refused = refusal(text, parent)
        if refused:
            return Verdict.drop(REFUSED.name, f"the evolving model refused ('{refused}')")
    if enabled(WRAPPED.name) and wrapping is not None and wrapping.problem:
        return Verdict.drop(WRAPPED.name, wrapping.problem)
    if enabled(IDENTICAL_TO_PARENT.name) and normalize(text) == normalize(parent):
        return Verdict.drop(IDENTICAL_TO_PARENT.name, "the evolution repeats its parent")
    if enabled(META_COMMENTARY.name):
        remark = commentary(text, parent)
        if remark:
            return Verdict.drop(META_COMMENTARY.name, f"talks about the instruction instead of being one ('{remark}')")
    if enabled(PROMPT_LEAK.name):
        leaked = find_leak(text, leak_phrases, parent)
        if leaked:
            return Verdict.drop(PROMPT_LEAK.name, f"contains the evolving prompt's words '{leaked}'")
        marker = find_marker(text, parent)
        if marker:
            return Verdict.drop(PROMPT_LEAK.name, f"a section marker or label is left in the rewrite ('{marker}')")
        reference = find_reference(text, parent)
        if reference:
            return Verdict.drop(PROMPT_LEAK.name, f"refers to the instruction it rewrites ('{reference}')")
        echo = find_echo(text, prompt, parent)
        if echo:
            return Verdict.drop(PROMPT_LEAK.name, f"repeats the evolving prompt's own words ('{echo}')")
    if enabled(LOST_INPUT.name):
        lost = find_lost_input(text, parent)
        if lost:
            return Verdict.drop(LOST_INPUT.name, lost)
    changed = script_change(parent, text)
    if changed and enabled(SCRIPT_CHANGED.name):
        return Verdict.drop(
            SCRIPT_CHANGED.name, f"the evolution is written in {changed[1]} script, its parent in {changed[0]}"
        )
    # another script is script_changed's alone, so that switching that off lets a translation through
    if not changed and enabled(LANGUAGE_CHANGED.name):
        moved = language_change(parent, text)
        if moved:
            return Verdict.drop(
                LANGUAGE_CHANGED.name, f"the evolution is written in language '{moved[1]}', its parent in '{moved[0]}'"
            )
    if max_chars is not None and len(text) > max_chars and enabled(TOO_LONG.name):
        return Verdict.drop(TOO_LONG.name, f"{len(text)} characters, over max_instruction_chars")
    return Verdict.ok()


# --- talk about the instruction instead of an instruction -----------------------------------------

_NAMED = (
    r"(?:the|this|my|your|our)\s+(?:new|rewritten|revised|updated|modified|evolved|harder|original|given|above|"
    r"resulting|final|improved|more (?:difficult|challenging|complex)) (?:instruction|prompt|question|task|problem|"
    r"test|exercise|version|subject|topic)(?: and (?:the )?\w+)?"
)
_COMMENTARY = re.compile(
    # "The new instruction is indeed quite challenging", "The rewritten prompt asks the reader to …",
    # "The given subject and problem are inextricably linked with …" (the embedded model's)
    rf"^\W*{_NAMED}\s+(?:is|are|was|were|has been|have been|now|asks|requires|adds|makes|would|could|can|should|will|becomes|"
    r"introduces|keeps|remains|looks|seems|reads|includes|focuses|involves)\b"
    # "To make it harder, …", "How to make it more challenging: …" (said of the instruction: a comma or colon
    # follows; "To make it harder for attackers, add rate limiting" is an instruction)
    r"|^\W*(?:(?:in order )?to|how to|one way to|a way to|ways to) make (?:it|this|the (?:\w+ )?(?:instruction|prompt|"
    r"question|task|problem)) (?:a bit |slightly |even |much )?(?:harder|tougher|more (?:difficult|challenging|complex))"
    r"[ \t]*[,:：]"
    # "To increase the difficulty, …", "How to raise the complexity: …"
    r"|^\W*(?:(?:in order )?to|how to|one way to|ways to) (?:increase|raise) the (?:difficulty|complexity)\b[^\n,:]{0,40}[,:：]"
    # "Your instructions are already challenging!", "The prompt is quite difficult." (the embedded model's, on a
    # conversation's turn): a verdict on the instruction's difficulty
    r"|^\W*(?:the|this|your|my|these) (?:original |given )?(?:instruction|prompt|question|task)s? (?:is|are) "
    r"(?:(?:already|now|quite|very|indeed|really|too|not|a bit|rather) )*(?:challenging|difficult|hard|complex|"
    r"complicated|simple|easy)\b"
    # "If you want to make the original more difficult to read, …" (the embedded model's)
    r"|^\W*if you (?:want|wish|would like|need) to make the (?:original|given|instruction|prompt|question|task)\b"
    r"[^\n,.]{0,30}?(?:harder|tougher|more (?:difficult|challenging|complex))",
    re.IGNORECASE,
)


def commentary(text: str, parent: str) -> str | None:
    """The opening words of ``text`` when it talks about the instruction (its difficulty, what it now asks) instead
    of being one; an opening the parent already has is its own."""
    m = _COMMENTARY.match(text.strip())
    if m is None or m.group(0).strip().casefold() in parent.casefold():
        return None
    return m.group(0).strip()


# --- structured answers: the final instruction after its marker -----------------------------------

# a "#Section Name#" line of a structured answer: where the final section ends if the model goes on
_SECTION = re.compile(r"^[ \t*_]*#[^#\n]{2,60}#[ \t*_]*:?[ \t]*$", re.MULTILINE)


def extract_final(text: str, marker: str) -> str | None:
    """The text after the last line that opens with ``marker`` ("#Final Instruction#", however decorated:
    "**Final Instruction:**", "### Final Instruction"), up to the next "#Section#" line; None without one."""
    core = r"\s+".join(map(re.escape, marker.strip("#:*_ \t").split()))
    if not core:
        return None
    head = re.compile(
        rf"^[ \t>*_#]*{core}(?:[ \t]*[#*_]+[ \t]*:?|[ \t]*[:：])[ \t*_]*|^[ \t>*_#]*{core}[ \t]*$",
        re.IGNORECASE | re.MULTILINE,
    )
    found = list(head.finditer(text))
    if not found:
        return None
    rest = text[found[-1].end() :]
    end = _SECTION.search(rest)
    final = (rest[: end.start()] if end else rest).strip()
    return final or None


def check_final(final: str | None, finish_reason: str | None, marker: str, enabled=lambda rule: True) -> Verdict:
    """An answer asked to end in a ``marker`` section that has none; one cut off or withheld is left to the
    rules that name that (``truncated_evolution``, ``content_filtered``)."""
    if final is None and finish_reason not in ("length", "content_filter") and enabled(NO_FINAL_INSTRUCTION.name):
        return Verdict.drop(NO_FINAL_INSTRUCTION.name, f"the answer has no '{marker}' section")
    return Verdict.ok()


# --- what a rewrite must not be: in another script, or leaking the evolving prompt ---------------

# Letters of these scripts carry about a word each, a Latin letter a fifth of one: weigh them so
# that a Chinese sentence next to a page of code still counts.
_SCRIPT_WEIGHT = {"CJK": 3, "HANGUL": 2}
_SCRIPT_GROUP = {"HIRAGANA": "CJK", "KATAKANA": "CJK", "IDEOGRAPHIC": "CJK"}


def scripts(text: str) -> dict[str, float]:
    """Letters of ``text`` by writing system (LATIN, CYRILLIC, CJK, ...), weighted by how much each says."""
    counts: dict[str, float] = {}
    for ch in unicodedata.normalize("NFKC", text):
        if not ch.isalpha():
            continue
        script = _SCRIPT_OF.get(ch) or _script_of(ch)
        counts[script] = counts.get(script, 0) + _SCRIPT_WEIGHT.get(script, 1)
    return counts


_SCRIPT_OF: dict[str, str] = {}  # letters met so far: unicodedata.name per letter is the slow part


def _script_of(ch: str) -> str:
    name = unicodedata.name(ch, "").split(" ", 1)[0]
    script = _SCRIPT_OF[ch] = _SCRIPT_GROUP.get(name, name) or "OTHER"
    return script


def script_change(parent: str, text: str, min_letters: int = 20) -> tuple[str, str] | None:
    """(parent's script, text's script) when the text all but drops the script its parent is written in.

    This is the "answered in another language" failure of small models (an English prompt rewritten in
    Chinese), caught by writing system only: English to French is not seen, and a parent that mixes
    scripts, or a rewrite that keeps a tenth of its parent's script, is never dropped.
    """
    if parent.isascii() and text.isascii():  # both Latin only (the common case): nothing to count
        return None
    before, after = scripts(parent), scripts(text)
    total_before, total_after = sum(before.values()), sum(after.values())
    if total_before < min_letters or total_after < min_letters:
        return None
    main = max(before, key=before.__getitem__)
    if before[main] < 0.9 * total_before or after.get(main, 0) >= 0.1 * total_after:
        return None
    return main, max(after, key=after.__getitem__)
