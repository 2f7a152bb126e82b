"""Which language an instruction is written in, for ``language_changed``: an English seed rewritten in French
passes ``script_changed`` (the same letters), yet the model answered in another language all the same.

The identifier is py3langid's (langid.py's naive Bayes model over byte n-grams, trained on 97 languages), asked
to choose only among the languages below: the full model costs ~8 ms a text here, the short list ~0.2 ms, and
each language left out is one fewer to confuse with a neighbour. A text's language is read per paragraph, from
its prose alone (code, quoted text and URLs taken out), so that an English instruction to translate a French
passage is English, and only a paragraph identified with high confidence counts: the seed tasks' two-word
instructions ("Create a birthday planning checklist.") are guessed at ~0.5, a French or Portuguese paragraph of
five words or more at 0.99 and above (``python -m bench.languages`` measures both sides).
"""

from __future__ import annotations

import functools
import re
from typing import Any

from evol.text import word_count, words

#: languages told apart (ISO 639-1 codes of the model); close neighbours the model confuses on a sentence
#: (Bosnian/Croatian/Serbian in Latin letters, Malay/Indonesian, Norwegian's two written forms, Galician) are
#: left out: a text in one of them is then read as its neighbour, consistently in parent and rewrite alike
LANGUAGES = (
    "en", "fr", "es", "pt", "it", "de", "nl", "ca", "ro", "pl", "cs", "sk", "hu", "fi", "sv", "da", "nb",
    "tr", "id", "vi", "tl", "sw", "ru", "uk", "bg", "el", "he", "ar", "fa", "hi", "bn", "zh", "ja", "ko", "th",
)  # fmt: skip
#: the probability (among LANGUAGES) above which a paragraph's language counts
CONFIDENT = 0.99
#: words of prose a paragraph needs before its language counts
MIN_WORDS = 5
#: the share of its parent's words above which a rewrite is no translation, whatever its paragraphs read as: a
#: translation keeps names, numbers and a few shared words (at most 0.42 between this corpus's Spanish and
#: Portuguese, Russian and Bulgarian), a rewrite in the parent's language most of them, even where the model
#: misreads it (made-up words and identifiers read as Spanish at 0.99)
MAX_SHARED = 0.6

_FENCED = re.compile(r"```.*?(?:```|\Z)|~~~.*?(?:~~~|\Z)", re.DOTALL)
_INLINE = re.compile(r"`[^`\n]*`|\$\$.*?\$\$|\$[^$\n]*\$|https?://\S+|\S+@\S+\.\w+", re.DOTALL)
# quoted text is the input, not the instruction's own language: "Translate « Il pleut » into English."
_QUOTED = re.compile(r"\"[^\"\n]*\"|“[^”\n]*”|«[^»\n]*»|„[^“”\n]*[“”]|「[^」\n]*」|(?<!\w)'[^'\n]{3,}'(?!\w)")
_PARAGRAPH = re.compile(r"\n\s*\n|\n(?=\s*(?:[-*•>]|\d+[.)])\s)")
# a sentence ends at . ! ? (or their CJK forms) before a space, a line's end or the text's end
_SENTENCE = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])")
_CODE_LINE = re.compile(
    r"^\s{4,}\S|^\s*(?:[{}()\[\];<>]|def |class |import |return |#include)|[;{}]\s*$"
    r"|^\s*(?:SELECT|INSERT|UPDATE|DELETE|CREATE|ALTER|WITH|FROM|WHERE|JOIN|GROUP BY|ORDER BY)\b"
)
_CAPITALIZED = re.compile(r"\b[^\W\d_][^\W_]*", re.UNICODE)


@functools.cache
def _identifier() -> Any:
    # loaded on first use, not on import: ~0.6 s to unpickle, paid only by a run whose rules read a language
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    ident = LanguageIdentifier.from_pickled_model(MODEL_FILE, norm_probs=True)
    ident.set_languages(list(LANGUAGES))
    return ident


def _prose(paragraph: str) -> str:
    lines = [ln for ln in paragraph.splitlines() if not _CODE_LINE.search(ln)]
    return _QUOTED.sub(" ", _INLINE.sub(" ", "\n".join(lines)))


def _mostly_names(prose: str) -> bool:
    """A list of names ("Country: China, India, US, Brazil") says nothing of the language it sits in."""
    found = _CAPITALIZED.findall(prose)
    return bool(found) and sum(w[0].isupper() for w in found) * 2 > len(found)


@functools.lru_cache(maxsize=8192)  # a parent is read once for each of its rewrites
def languages(text: str, confident: float = CONFIDENT, min_words: int = MIN_WORDS) -> frozenset[str]:
    """The languages of ``text``'s paragraphs of prose that are identified with confidence (none if none is)."""
    found = set()
    for paragraph in _PARAGRAPH.split(_FENCED.sub("\n\n", text)):
        for sentence in _SENTENCE.split(_prose(paragraph)):
            if word_count(sentence) < min_words or _mostly_names(sentence):
                continue
            code, p = _identifier().classify(sentence)
            if p >= confident:
                found.add(str(code))
    return frozenset(found)


def language_change(
    parent: str, text: str, confident: float = CONFIDENT, min_words: int = MIN_WORDS
) -> tuple[str, str] | None:
    """(parent's language, text's language) when every confident paragraph of each is in one language, and the
    two differ; a parent in several languages (or none with confidence) is no signal, and neither is a rewrite
    that keeps any paragraph in its parent's language (an English instruction around a French input) or most of
    its parent's words."""
    after = languages(text, confident, min_words)
    if len(after) != 1:
        return None
    before = languages(parent, confident, min_words)
    if len(before) != 1 or before == after:
        return None
    theirs = set(words(parent))
    if len(theirs & set(words(text))) > MAX_SHARED * len(theirs):
        return None
    return next(iter(before)), next(iter(after))
