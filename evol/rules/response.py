"""The answer rules: each looks at one answer to an instruction and keeps it or drops it under a named rule."""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources

from evol.models import Verdict
from evol.rules.clarifications import clarification
from evol.rules.endpoint import content_filtered
from evol.rules.languages import answer_language_change
from evol.rules.refusals import refusal
from evol.rules.rule import Rule
from evol.text import normalize, word_count, words

EMPTY = Rule(("empty_response",), "the answering model returned nothing")
TRUNCATED = Rule(
    ("truncated_response",),
    "the answer stopped at `max_tokens` (`finish_reason=length`) twice: a cut answer is asked once more with twice "
    "`max_tokens` (at most 8,192), since eliminating long answers would bias the data toward short tasks; the cut "
    "one is kept in the row's `cut_answers` (a candidate's, with `--answers`, in its own)",
)
ECHOED = Rule(
    ("echoed_response",),
    "the answer only repeats the instruction (after folding case, punctuation and spaces), or in a conversation an "
    "earlier turn of it (a small model answers the last turn with its previous answer again)",
)
SORRY_SHORT = Rule(("sorry_short_response",), 'the answer says "sorry" in fewer than 80 words (the paper\'s rule)')
REFUSED = Rule(
    ("refused_response",),
    'the answer opens with a refusal and is short (under the same 80 words; Chinese and Japanese counted at two characters a word): "I can\'t help with that request.", "As an AI language model, I cannot…", "抱歉，我无法…", "申し訳ありませんが…できません", "Lo siento, pero no puedo…", "Je suis désolé, mais je ne peux pas…", "Ich kann Ihnen dabei nicht helfen" (also Portuguese, Italian, Russian, Korean); a long helpful answer that apologises or says "I can\'t" in passing is kept, and a phrase the instruction itself contains is no signal',
)
CLARIFICATION = Rule(
    ("clarification_response",),
    "the answer asks back instead of answering, as a model does when the evolution lost what it refers to or is "
    'too vague (Auto Evol-Instruct counts these as failed evolutions): a short answer that asks for input ("Could you '
    'please provide the passage you would like me to rewrite?", "I don\'t see any code", "请提供…") or is only an '
    'affirmation and a question to the user ("Sure! What topic should the poem be about?"); an answer that answers and '
    "then offers more, a message the instruction asked for, and questions the instruction asked for are kept",
)
STOPWORDS_ONLY = Rule(("stopwords_only_response",), "the answer is only punctuation and stop words")
LANGUAGE_CHANGED = Rule(
    ("language_changed_response",),
    "the answer is written in another language than its instruction (an English instruction answered in French or "
    "Chinese, as small and multilingual models do): its first paragraphs of prose are read as `language_changed` "
    'reads a rewrite; kept when the instruction or an earlier turn names that language ("into Chinese", "in '
    'Spanish", "en anglais"), asks for a translation, quotes text in it or is written in it, and when the answer '
    "mixes languages",
)

#: common English function words (stopwords.txt beside this module); an answer made only of these says nothing
STOPWORDS = frozenset(
    line
    for line in resources.files("evol.rules").joinpath("stopwords.txt").read_text(encoding="utf-8").split("\n")
    if line and not line.startswith("#")
)


def check_response(
    text: str,
    finish_reason: str | None,
    sorry_max_words: int = 80,
    enabled=lambda rule: True,
    instruction: str | None = None,
    earlier: Iterable[str] = (),
) -> Verdict:
    """The answer rules in order, cheapest first; the first that fires decides. ``earlier``: the texts of a
    conversation's turns before the instruction."""
    filtered = content_filtered(finish_reason, "the response", enabled)
    if filtered is not None:
        return filtered
    if enabled(EMPTY.name) and not text.strip():
        return Verdict.drop(EMPTY.name, "the responding model returned no text")
    if enabled(TRUNCATED.name) and finish_reason == "length":
        return Verdict.drop(TRUNCATED.name, "the response hit max_tokens (finish_reason=length)")
    if enabled(ECHOED.name) and instruction is not None and normalize(text) == normalize(instruction):
        return Verdict.drop(ECHOED.name, "the response only repeats the instruction")
    if enabled(ECHOED.name) and earlier:
        mine = normalize(text)
        if any(mine == normalize(turn) for turn in earlier):
            return Verdict.drop(ECHOED.name, "the response only repeats an earlier turn of its conversation")
    tokens = words(text)
    if enabled(SORRY_SHORT.name) and "sorry" in text.casefold() and len(tokens) < sorry_max_words:
        return Verdict.drop(SORRY_SHORT.name, f"says 'sorry' in {len(tokens)} words (< {sorry_max_words})")
    if enabled(REFUSED.name):
        refused = refusal(text, instruction or "")
        if refused and word_count(text) < sorry_max_words:
            return Verdict.drop(REFUSED.name, f"opens with a refusal ('{refused}') in {word_count(text)} words")
    if enabled(CLARIFICATION.name):
        asked = clarification(text, instruction or "")
        if asked:
            return Verdict.drop(CLARIFICATION.name, f"asks back instead of answering ('{asked}')")
    if enabled(STOPWORDS_ONLY.name) and all(t in STOPWORDS for t in tokens):
        return Verdict.drop(STOPWORDS_ONLY.name, "the response is only punctuation and stop words")
    if enabled(LANGUAGE_CHANGED.name) and instruction is not None:
        moved = answer_language_change(instruction, text, tuple(earlier))
        if moved:
            return Verdict.drop(
                LANGUAGE_CHANGED.name,
                f"the answer is written in language '{moved[1]}', its instruction in '{moved[0]}'",
            )
    return Verdict.ok()
