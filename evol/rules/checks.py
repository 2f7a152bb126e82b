"""The elimination rules: each looks at one candidate and returns a Verdict with a named rule."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from evol.models import Verdict
from evol.rules.refusals import refusal, word_count
from evol.rules.wrappers import Unwrapped, unwrap

__all__ = ["Unwrapped", "unwrap"]  # the pipeline cleans evolutions through filters

# Common English function words; a "response" made only of these (and punctuation) says nothing.
STOPWORDS = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "am",
        "an",
        "and",
        "any",
        "are",
        "aren't",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "can't",
        "cannot",
        "could",
        "couldn't",
        "did",
        "didn't",
        "do",
        "does",
        "doesn't",
        "doing",
        "don't",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "had",
        "hadn't",
        "has",
        "hasn't",
        "have",
        "haven't",
        "having",
        "he",
        "he'd",
        "he'll",
        "he's",
        "her",
        "here",
        "here's",
        "hers",
        "herself",
        "him",
        "himself",
        "his",
        "how",
        "how's",
        "i",
        "i'd",
        "i'll",
        "i'm",
        "i've",
        "if",
        "in",
        "into",
        "is",
        "isn't",
        "it",
        "it's",
        "its",
        "itself",
        "just",
        "let's",
        "me",
        "more",
        "most",
        "mustn't",
        "my",
        "myself",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "ought",
        "our",
        "ours",
        "ourselves",
        "out",
        "over",
        "own",
        "same",
        "shan't",
        "she",
        "she'd",
        "she'll",
        "she's",
        "should",
        "shouldn't",
        "so",
        "some",
        "such",
        "than",
        "that",
        "that's",
        "the",
        "their",
        "theirs",
        "them",
        "themselves",
        "then",
        "there",
        "there's",
        "these",
        "they",
        "they'd",
        "they'll",
        "they're",
        "they've",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "very",
        "was",
        "wasn't",
        "we",
        "we'd",
        "we'll",
        "we're",
        "we've",
        "were",
        "weren't",
        "what",
        "what's",
        "when",
        "when's",
        "where",
        "where's",
        "which",
        "while",
        "who",
        "who's",
        "whom",
        "why",
        "why's",
        "will",
        "with",
        "won't",
        "would",
        "wouldn't",
        "yes",
        "you",
        "you'd",
        "you'll",
        "you're",
        "you've",
        "your",
        "yours",
        "yourself",
        "yourselves",
        "ok",
        "okay",
        "well",
        "oh",
        "um",
        "uh",
        "hmm",
    ]
)

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?", re.UNICODE)


def normalize(text: str) -> str:
    """Case, accents-as-composed, punctuation and whitespace folded: the key for exact comparisons."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_WORD.findall(text))


def words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


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


# --- evolution rules -------------------------------------------------------------------------------


def check_evolution(
    text: str,
    finish_reason: str | None,
    parent: str,
    leak_phrases: Iterable[str],
    enabled=lambda rule: True,
    wrapping: Unwrapped | None = None,
) -> Verdict:
    """The rules that need no extra LLM call, cheapest first; ``wrapping`` is what ``unwrap`` made of it."""
    if enabled("content_filtered") and finish_reason == "content_filter":
        return Verdict.drop(
            "content_filtered", "the endpoint's content filter withheld the evolution (finish_reason=content_filter)"
        )
    if not text.strip() and wrapping is not None and wrapping.problem and enabled("wrapped_evolution"):
        return Verdict.drop("wrapped_evolution", wrapping.problem)
    if enabled("empty_evolution") and not text.strip():
        return Verdict.drop("empty_evolution", "the evolving model returned no text")
    if enabled("truncated_evolution") and finish_reason == "length":
        return Verdict.drop("truncated_evolution", "the evolution hit max_tokens (finish_reason=length)")
    if enabled("refused_evolution"):
        refused = refusal(text, parent)
        if refused:
            return Verdict.drop("refused_evolution", f"the evolving model refused ('{refused}')")
    if enabled("wrapped_evolution") and wrapping is not None and wrapping.problem:
        return Verdict.drop("wrapped_evolution", wrapping.problem)
    if enabled("identical_to_parent") and normalize(text) == normalize(parent):
        return Verdict.drop("identical_to_parent", "the evolution repeats its parent")
    if enabled("prompt_leak"):
        leaked = find_leak(text, leak_phrases, parent)
        if leaked:
            return Verdict.drop("prompt_leak", f"contains the evolving prompt's words '{leaked}'")
    if enabled("script_changed"):
        changed = script_change(parent, text)
        if changed:
            return Verdict.drop(
                "script_changed", f"the evolution is written in {changed[1]} script, its parent in {changed[0]}"
            )
    return Verdict.ok()


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


def find_leak(text: str, phrases: Iterable[str], parent: str = "") -> str | None:
    """The first phrase of the evolving prompt that the text repeats and its parent did not already say."""
    low, parent_low = text.casefold(), parent.casefold()
    for phrase in phrases:
        p = phrase.casefold()
        if p in low and p not in parent_low:  # "the given prompt" in a seed is the seed's own wording
            return phrase
    return None


# --- the information-gain judge (its answer is read in judge_reader) ------------------------------


def check_judgement(judgement: str, enabled=lambda rule: True, keep_unclear: bool = False) -> Verdict:
    if enabled("no_information_gain") and judgement == "equal":
        return Verdict.drop("no_information_gain", "the judge found the evolution equal to its parent")
    if judgement == "unclear" and enabled("judge_unclear") and not keep_unclear:
        return Verdict.drop(
            "judge_unclear", "the judge's answer read neither as Equal nor as Not Equal, on the retry either"
        )
    return Verdict.ok()


# --- the ranking judge -----------------------------------------------------------------------------


def check_ranking(scored: int, enabled=lambda rule: True) -> Verdict:
    """The ranking judge must have read at least one candidate, or the choice of output is a guess."""
    if scored == 0 and enabled("rank_unclear"):
        return Verdict.drop(
            "rank_unclear", "the ranking judge gave no readable score to any candidate, on the retry either"
        )
    return Verdict.ok()


# --- response rules --------------------------------------------------------------------------------


def check_response(
    text: str,
    finish_reason: str | None,
    sorry_max_words: int = 80,
    enabled=lambda rule: True,
    instruction: str | None = None,
) -> Verdict:
    if enabled("content_filtered") and finish_reason == "content_filter":
        return Verdict.drop(
            "content_filtered", "the endpoint's content filter withheld the response (finish_reason=content_filter)"
        )
    if enabled("empty_response") and not text.strip():
        return Verdict.drop("empty_response", "the responding model returned no text")
    if enabled("truncated_response") and finish_reason == "length":
        return Verdict.drop("truncated_response", "the response hit max_tokens (finish_reason=length)")
    if enabled("echoed_response") and instruction is not None and normalize(text) == normalize(instruction):
        return Verdict.drop("echoed_response", "the response only repeats the instruction")
    tokens = words(text)
    if enabled("sorry_short_response") and "sorry" in text.casefold() and len(tokens) < sorry_max_words:
        return Verdict.drop("sorry_short_response", f"says 'sorry' in {len(tokens)} words (< {sorry_max_words})")
    if enabled("refused_response"):
        refused = refusal(text, instruction or "")
        if refused and word_count(text) < sorry_max_words:
            return Verdict.drop("refused_response", f"opens with a refusal ('{refused}') in {word_count(text)} words")
    if enabled("stopwords_only_response") and all(t in STOPWORDS for t in tokens):
        return Verdict.drop("stopwords_only_response", "the response is only punctuation and stop words")
    return Verdict.ok()
