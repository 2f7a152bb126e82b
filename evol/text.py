"""Text as the stages compare and count it: one normal form for exact comparison, words, and word counts."""

from __future__ import annotations

import re
import unicodedata

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?", re.UNICODE)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


# ASCII that is no letter or digit, as a space: in ASCII text without an apostrophe the words are the runs of the rest
_ASCII_GAPS = str.maketrans({chr(c): " " for c in range(128) if not chr(c).isalnum()})


def normalize(text: str) -> str:
    """Case, accents-as-composed, punctuation and whitespace folded: the key for exact comparisons."""
    if text.isascii() and "'" not in text:
        # the same words as below, twice as fast (dedup normalises every row): NFKC leaves ASCII as it is,
        # casefold is lower, and a word is a run of letters and digits when no apostrophe can join two
        return " ".join(text.lower().translate(_ASCII_GAPS).split())
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_WORD.findall(text))


def words(text: str) -> list[str]:
    """The words of ``text``, casefolded, without punctuation."""
    return _WORD.findall(text.casefold())


def word_count(text: str) -> int:
    """Words, with Chinese and Japanese (written without spaces) counted at about two characters a word: what the
    answer rules measure a refusal's length in."""
    cjk = len(_CJK.findall(text))
    return len(_WORD.findall(_CJK.sub(" ", text))) + (cjk + 1) // 2


def whitespace_word_count(text: str) -> int:
    """Whitespace-separated words: what the export's length options and the report's length plots count."""
    return len(text.split())
