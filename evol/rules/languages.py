"""Which language an instruction is written in, for ``language_changed``: an English seed rewritten in French
passes ``script_changed`` (the same letters), yet the model answered in another language all the same.

The identifier is py3langid's (langid.py's naive Bayes model over byte n-grams, trained on 97 languages), asked
to choose only among the languages below: the full model costs ~8 ms a text here, the short list ~0.2 ms, and
each language left out is one fewer to confuse with a neighbour. A text's language is read per paragraph, from
its prose alone (code, quoted text and URLs taken out), so that an English instruction to translate a French
passage is English, and only a paragraph identified with high confidence counts: the seed tasks' two-word
instructions ("Create a birthday planning checklist.") are guessed at ~0.5, a French or Portuguese paragraph of
five words or more at 0.99 and above (``python -m bench.languages`` measures both sides).

An answer, for ``language_changed_response``, is read by its opening paragraphs against its instruction's
language, with what the conversation asked for (a language named, a translation, quoted text) as no signal.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
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


def _read(text: str, confident: float = CONFIDENT) -> str | None:
    """The language ``text`` is identified as, when the identifier is at least ``confident`` of it."""
    code, p = _identifier().classify(text)
    return str(code) if p >= confident else None


@functools.lru_cache(maxsize=8192)  # a parent is read once for each of its rewrites
def languages(text: str, confident: float = CONFIDENT, min_words: int = MIN_WORDS) -> frozenset[str]:
    """The languages of ``text``'s paragraphs of prose that are identified with confidence (none if none is)."""
    found = set()
    for paragraph in _PARAGRAPH.split(_FENCED.sub("\n\n", text)):
        for sentence in _SENTENCE.split(_prose(paragraph)):
            if word_count(sentence) < min_words or _mostly_names(sentence):
                continue
            if code := _read(sentence, confident):
                found.add(code)
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


#: how much of an answer is read for its language: its first paragraphs of prose, each cut to a length the
#: identifier reads as surely as the whole (~0.1 ms each), so a long answer costs no more than a short one
ANSWER_PARAGRAPHS = 3
ANSWER_CHARS = 300

#: each language's names in English and in itself: an instruction that names the answer's language asks for it
#: ("Translate the sentence into Chinese", "Write a poem in Spanish"); English also by the names the other
#: languages give it, for an instruction that asks for an English answer in its own language
NAMES: dict[str, tuple[str, ...]] = {
    "en": ("english", "anglais", "inglés", "ingles", "inglês", "inglese", "englisch", "engels", "angielski",
           "anglicky", "angličtina", "angol", "englanti", "engelska", "engelsk", "ingilizce", "inggris",
           "tiếng anh", "kiingereza", "английский", "англійська", "английски", "αγγλικά", "אנגלית",
           "الإنجليزية", "انگلیسی", "अंग्रेज़ी", "अंग्रेजी", "ইংরেজি", "英语", "英語", "英文", "영어", "ภาษาอังกฤษ"),
    "fr": ("french", "français", "francais", "française"),
    "es": ("spanish", "español", "espanol", "castellano", "castilian"),
    "pt": ("portuguese", "português", "portugues"),
    "it": ("italian", "italiano"),
    "de": ("german", "deutsch"),
    "nl": ("dutch", "flemish", "nederlands"),
    "ca": ("catalan", "català"),
    "ro": ("romanian", "română", "romana"),
    "pl": ("polish", "polski", "polsku"),
    "cs": ("czech", "čeština", "česky"),
    "sk": ("slovak", "slovenčina", "slovensky"),
    "hu": ("hungarian", "magyar"),
    "fi": ("finnish", "suomi", "suomeksi"),
    "sv": ("swedish", "svenska"),
    "da": ("danish", "dansk"),
    "nb": ("norwegian", "norsk", "bokmål"),
    "tr": ("turkish", "türkçe"),
    "id": ("indonesian", "malay", "bahasa"),
    "vi": ("vietnamese", "tiếng việt"),
    "tl": ("tagalog", "filipino"),
    "sw": ("swahili", "kiswahili"),
    "ru": ("russian", "русский", "русском", "по-русски"),
    "uk": ("ukrainian", "українська", "українською"),
    "bg": ("bulgarian", "български"),
    "el": ("greek", "ελληνικά"),
    "he": ("hebrew", "עברית"),
    "ar": ("arabic", "العربية"),
    "fa": ("persian", "farsi", "فارسی"),
    "hi": ("hindi", "हिन्दी", "हिंदी"),
    "bn": ("bengali", "bangla", "বাংলা"),
    "zh": ("chinese", "mandarin", "cantonese", "中文", "汉语", "漢語", "普通话", "汉字"),
    "ja": ("japanese", "日本語"),
    "ko": ("korean", "한국어"),
    "th": ("thai", "ภาษาไทย"),
}  # fmt: skip
#: the commonest function words of each language written in Latin letters: a paragraph of real prose in one of
#: them holds several, while made-up words (a scripted model's, a broken model's) can read as Tagalog or
#: Indonesian with full confidence and hold none; other scripts need no such check, as Latin gibberish never reads
#: as them
FUNCTION_WORDS: dict[str, frozenset[str]] = {
    code: frozenset(ws.split())
    for code, ws in {
        "en": "the and of to is in that it for you with are this on be as was not have can your",
        "fr": "le la les de des et est un une du en que qui pour pas dans sur au il vous ce avec",
        "es": "el la los las de y que en un una es por para con del se no su como al",
        "pt": "o a os as de e que em um uma é do da para com não se no na por",
        "it": "il la di e che un una è per non del della in con si le gli lo da al",
        "de": "der die das und ist nicht ein eine zu den von mit sich auf es ich du dem für auch",
        "nl": "de het een en van is niet dat die op te in met voor zijn je ik aan er",
        "ca": "el la els les de i que és un una per amb no es del al en",
        "ro": "și în de la nu este un o cu pe că se a ce mai din sunt",
        "pl": "i w na nie się z do jest to że a o jak ale po co tak",
        "cs": "a je v se na to že s z o do jak ale i by k pro",
        "sk": "a je v sa na to že s z do ako ale aj by pre sú",
        "hu": "a az és hogy nem is egy van meg de ez el ki már csak",
        "fi": "ja on ei se että oli hän niin mutta kun ovat tai myös jos ole",
        "sv": "och att det är en som på för med inte av till den har jag om",
        "da": "og at det er en som på for med ikke af til den har jeg de",
        "nb": "og i det er en som på for med ikke av til den har jeg at",
        "tr": "ve bir bu da de için ile çok ne daha gibi olarak ama var değil",
        "id": "yang dan di ini itu dengan untuk tidak dari dalam akan ada ke juga saya",
        "vi": "và của là có không một những cho được trong các với này người",
        "tl": "ang ng sa mga na at ay ko hindi siya ito para ka kung ni",
        "sw": "na ya wa kwa ni za la katika kama hii cha kuwa lakini huo",
    }.items()
}
#: the share of a paragraph's words that must be the function words of the language it reads as (Latin letters):
#: 0.15 and up in this corpus's prose, at most 0.06 in bench.server's made-up words read as Tagalog at 0.99
FUNCTION_SHARE = 0.1
# "translate" in the languages above (stems): a translation's answer is in another language by design
_TRANSLATE = re.compile(
    r"translat|tradu[cizç]|übersetz|vertaal|przetłumacz|přelož|prelož|fordíts|käännä|översätt|oversæt|"
    r"overs[æe]tt|çevir|terjemah|dịch|isalin|tafsiri|переве|перекла|μετάφρασ|μετάφρα|תרגם|ترجم|ترجمه|"
    r"अनुवाद|অনুবাদ|翻译|翻譯|翻訳|번역|แปล",
    re.IGNORECASE,
)
# names in scripts written without spaces (Han, kana, Hangul, Thai) are found inside words, the others as words
_UNSPACED = re.compile(r"[\u0e00-\u0e7f\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")
_NAMED = {
    code: re.compile("|".join(re.escape(n) if _UNSPACED.search(n) else rf"(?<!\w){re.escape(n)}" for n in names))
    for code, names in NAMES.items()
}


def _names(text: str, code: str) -> bool:
    """Whether ``text`` names the language ``code``."""
    return code in _NAMED and _NAMED[code].search(text.casefold()) is not None


def _real(prose: str, code: str) -> bool:
    """Whether a paragraph read as ``code`` holds that language's function words (always, for other scripts)."""
    common = FUNCTION_WORDS.get(code)
    if common is None:
        return True
    found = words(prose)
    return sum(w in common for w in found) >= FUNCTION_SHARE * len(found)


def answer_languages(text: str) -> frozenset[str]:
    """The languages of an answer's first paragraphs of prose, read a paragraph at a time (an answer is read by
    its opening, where a model that answers in another language already does)."""
    found, read = set(), 0
    for paragraph in _PARAGRAPH.split(_FENCED.sub("\n\n", text)):
        prose = _prose(paragraph[:ANSWER_CHARS]).strip()
        if word_count(prose) < MIN_WORDS or _mostly_names(prose):
            continue
        if (code := _read(prose)) and _real(prose, code):
            found.add(code)
        read += 1
        if read == ANSWER_PARAGRAPHS:
            break
    return frozenset(found)


def _quoted_languages(text: str) -> set[str]:
    """The languages of the text an instruction quotes ("Correct « Je suis allé… »"), which its prose leaves out."""
    found = set()
    for quote in _QUOTED.findall(text):
        if word_count(quote) >= MIN_WORDS and (code := _read(quote)):
            found.add(code)
    return found


def answer_language_change(instruction: str, answer: str, earlier: Sequence[str] = ()) -> tuple[str, str] | None:
    """(instruction's language, answer's language) when the answer's opening is in one language and the
    instruction's prose in another; no signal when either reads as several languages or none, or when the
    conversation asks for the answer's language: it names it, asks for a translation, quotes text in it, or an
    earlier turn is written in it."""
    before = languages(instruction)
    if len(before) != 1:
        return None
    after = answer_languages(answer)
    if len(after) != 1 or after == before:
        return None
    code = next(iter(after))
    asked = "\n\n".join((*earlier, instruction))
    if _TRANSLATE.search(asked) or _names(asked, code) or code in _quoted_languages(asked):
        return None
    if any(code in languages(turn) for turn in earlier):
        return None
    return next(iter(before)), code
