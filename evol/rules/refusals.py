"""Refusals: how a model says no in its opening words, in English, Chinese, Japanese, Spanish, French, German
and a few more languages.

A refusal is decided on the opening of a text only. A genuine instruction may quote "I'm sorry" or ask
why a program says "I cannot …", and a long helpful answer may apologise in passing; what a refusing model
does is *start* with its refusal. Phrases are matched on casefolded text with typographic apostrophes
folded, so "I can’t" and "I CAN'T" are one phrase.
"""

from __future__ import annotations

import re
import unicodedata

# how far into a text a refusal is looked for: a refusal is said in the first sentence or two
OPENING_CHARS = 240

# --- pieces of the English phrasings

_I_CANNOT = (
    r"(?:i|we)\s*(?:really\s+|simply\s+|unfortunately\s+)?"
    r"(?:can't|cannot|can not|won't|will not|am unable to|'m unable to|are unable to|am not able to|"
    r"'m not able to|'re unable to|'re not able to|am not allowed to|'m not allowed to|am not permitted to|'m not permitted to|"
    r"must decline to|have to decline to|refuse to|'m not going to|am not going to|"
    r"'m afraid i (?:can't|cannot|won't)|am afraid i (?:can't|cannot|won't))"
)
# verbs of helping refuse whatever follows ("I can't help with", "I cannot comply"); "help but" is an idiom
_ASSIST = (
    r"(?:help(?!\s+but\b)|assist|fulfil+|comply|accommodate|oblige|engage|participate|proceed|"
    r"go along|support (?:this|that|your|such)|continue (?:with )?(?:this|that))"
)
# verbs of making refuse only with an object that points at the request, not at the user's own task
# ("I can't write a recursive parser" is a user's question; "I can't write that" is a refusal)
_MAKE = (
    r"(?:create|write|rewrite|generate|provide|produce|make|modify|change|complete|give|offer|share|evolve|"
    r"transform|complicate|rephrase|answer|do|respond to|draft|come up with)"
)
_REQUEST_OBJECT = (
    r"(?:you\s+)?(?:with\s+)?(?:this|that|it|such|these|those|your|any|anything|content|information|"
    r"assistance|guidance|advice|help|prompts?\b|requests?\b|instructions?\b|"
    r"the (?:requested|rewritten|new|modified|harder|revised|updated|above|given|following|prompt|"
    r"request|instruction|task|information|content|version)|"
    r"an? (?:harder|rewritten|revised|new|more|modified|different|updated|version|response))"
)

_EN_STRONG = (
    rf"{_I_CANNOT}\s+(?:\w+\s+)?{_ASSIST}",
    rf"{_I_CANNOT}\s+{_MAKE}\s+{_REQUEST_OBJECT}",
    r"(?:i|we)\s+(?:must|have to|need to)\s+(?:respectfully\s+|politely\s+)?(?:decline|refuse)",
    r"(?:i'm|i am)\s+not\s+(?:comfortable|in a position)\s+(?:with\s+|to\s+)?\w+ing\b|(?:i'm|i am) not in a position to",
    r"(?:that|this|it)(?:'s| is)\s+not\s+something\s+i\s+(?:can|could|am able to|'m able to|will)",
    r"(?:that|this|such a) request\s+(?:is|goes)\s+(?:not|against|beyond|outside)",
    (
        r"as an? (?:ai|a\.i\.|artificial intelligence|large language model|language model|llm|ai language model|"
        r"ai model|ai assistant|ai developed by [\w ]{1,30}|assistant developed by [\w ]{1,30})\b[^.!?\n]{0,40}?,?\s*i\b"
    ),
    (
        r"(?:i'm|i am)\s+(?:just |only |merely )?(?:an ai|an artificial intelligence|a language model|an ai language model|"
        r"an ai assistant)(?:\s+(?:and|so)|,|\.)"
    ),
    r"unfortunately,?\s+(?:i|we)\s+(?:can't|cannot|can not|won't|will not|am unable|'m unable|am not able|'m not able)",
)
# an apology that opens the text turns the plainest "can't" that follows into a refusal
_EN_APOLOGY = (
    r"(?:(?:i'm|i am|i feel|we're|we are)\s+(?:really\s+|very\s+|so\s+|truly\s+|terribly\s+)?sorry|sorry|"
    r"(?:my\s+)?apologies|i\s+(?:do\s+)?apologi[sz]e|i regret|i'm afraid|i am afraid)"
)
_EN_NEGATION = (
    r"\b(?:can't|cannot|can not|won't|will not|unable|not able|not possible|not allowed|not permitted|"
    r"decline|refuse)\b"
)

# --- other languages: (phrases that refuse at the start, apologies, what an apology must be followed by)
_OTHER = {
    "zh": (
        (
            (
                r"我(?:们)?(?:无法|無法|不能|不可以|没办法|沒辦法|没有办法|做不到|恕难|恕難|不会|不會)"
                r"(?:为|為|帮|幫|协|協|提|满|滿|完|回|生|创|創|编|編|写|寫|参|參|处|處|改|支|给|給|按|执|執|这|這|那|该|該|此)"
            ),
            r"(?:作为|作為)(?:一个|一個|一名|一款)?\s*(?:ai|人工智能|人工智慧|语言模型|語言模型)",
            r"(?:这|這|该|該|此)(?:个|個)?(?:请求|請求|要求|问题|問題)(?:我)?(?:无法|無法|不能)",
        ),
        r"(?:很|非常|十分|真的)?(?:抱歉|对不起|對不起|不好意思|遗憾|遺憾)",
        r"无法|無法|不能|不可以|没办法|沒辦法|做不到|恕难|恕難|不会|不會|拒绝|拒絕",
    ),
    "ja": (
        (
            r"(?:その|この|ご)?(?:ご依頼|ご要望|リクエスト|質問)[^。！？]{0,20}(?:できません|いたしかねます|お応えできません)",
            r"(?:私は)?(?:ai|人工知能|言語モデル)(?:アシスタント|言語モデル)?(?:として|なので)",
            r"(?:お手伝い|対応|回答|お答え|提供|作成)(?:することは|は)?(?:でき|出来)(?:ません|かねます)",
            r"残念ながら",
        ),
        r"(?:大変|誠に|本当に)?(?:申し訳(?:あり|ござい)ません|すみません|ごめんなさい|恐れ入りますが|恐縮ですが)",
        r"(?:でき|出来)(?:ません|かねます)|いたしかねます|お断り",
    ),
    "es": (
        (
            (
                r"no (?:puedo|podré|podemos|me es posible|estoy en condiciones de|estoy autorizad[oa])\s+"
                r"(?:\w+\s+)?(?:ayudar|asistir|proporcionar|crear|escribir|generar|responder|cumplir|hacer eso|"
                r"hacer esto|facilitar|ofrecer|dar|brindar|realizar|atender|continuar|participar|reescribir)"
            ),
            r"como (?:un |una )?(?:modelo de lenguaje|ia|inteligencia artificial|asistente de ia|asistente virtual)\b",
            r"(?:lamentablemente|desafortunadamente|por desgracia),?\s+no (?:puedo|podré|me es posible)",
        ),
        r"(?:lo siento(?: mucho)?|lo lamento|disculp[ae](?:me)?|perdón|perdona|mis disculpas|lamento)",
        r"\bno (?:puedo|podré|podemos|me es posible|es posible|estoy en condiciones)|\bimposible\b",
    ),
    "fr": (
        (
            (
                r"je ne (?:peux|pourrai|pourrais|suis pas en mesure de|vais pas pouvoir)\s+(?:pas\s+)?(?:\w+\s+)?"
                r"(?:aider|assister|fournir|répondre|créer|écrire|rédiger|générer|donner|satisfaire|accéder|traiter|"
                r"accomplir|faire (?:ça|cela|ceci)|proposer|réécrire|participer|continuer|donner suite)"
            ),
            r"en tant qu(?:e |')(?:ia|intelligence artificielle|modèle de langage|assistant(?:e)? (?:virtuel|ia))",
            r"il m'est (?:impossible|interdit)",
            r"malheureusement,?\s+je ne (?:peux|pourrai|suis pas)",
        ),
        (
            r"(?:je suis (?:vraiment |sincèrement |très )?désolée?|désolée?|je regrette|toutes mes excuses|"
            r"excusez-moi|pardon|navrée?|je suis navrée?)"
        ),
        r"\bne (?:peux|pourrai|pourrais|suis pas en mesure|vais pas pouvoir)|\bimpossible\b",
    ),
    "de": (
        (
            (
                r"ich (?:kann|darf|werde)\b[^.!?\n]{0,60}?\bnicht\s+(?:\w+\s+)?(?:helfen|unterstützen|erstellen|schreiben|"
                r"erfüllen|beantworten|liefern|geben|bereitstellen|nachkommen|tun|machen|generieren|umschreiben|mitwirken)"
            ),
            r"(?:dabei|damit|hierbei|hiermit|bei dieser anfrage) kann ich (?:ihnen |dir |euch )?nicht",
            r"ich bin nicht in der lage|es ist mir nicht (?:möglich|gestattet|erlaubt)",
            r"als (?:ein |eine )?(?:ki|künstliche intelligenz|ki-sprachmodell|sprachmodell|ki-assistent|ki-modell)\b",
            r"(?:leider|bedauerlicherweise|unglücklicherweise),?\s+(?:kann|darf|werde) ich\b[^.!?\n]{0,60}?\b(?:nicht|keine)\b",
        ),
        (
            r"(?:es tut mir (?:sehr |wirklich )?leid|tut mir leid|entschuldigung|entschuldigen sie|verzeihung|"
            r"ich bedauere|bedauerlicherweise|leider)"
        ),
        r"\b(?:nicht|keine|keinen|unmöglich)\b",
    ),
    "other": (  # Portuguese, Italian, Russian, Korean: the commonest openings
        (
            r"não (?:posso|consigo|sou capaz de|tenho como) (?:\w+\s+)?(?:ajudar|fornecer|criar|escrever|responder|atender)",
            r"non (?:posso|sono in grado di) (?:\w+\s+)?(?:aiutar|fornire|creare|scrivere|rispondere|assister)",
            r"(?:я не могу|не могу (?:помочь|выполнить|предоставить|создать|написать|ответить))",
            r"(?:도와\s*드릴 수 없|도움을 드릴 수 없|제공할 수 없|답변(?:을|해)?\s*드릴 수 없)",
        ),
        (
            r"(?:desculp[ae]|lamento|infelizmente|mi dispiace|purtroppo|scusa(?:mi)?|извините|простите|к сожалению|"
            r"죄송(?:하지만|합니다)|미안(?:하지만|합니다)|유감스럽게도)"
        ),
        r"não (?:posso|consigo)|non (?:posso|sono in grado)|не могу|не (?:имею|в состоянии)|수 없",
    ),
}

_STRONG = re.compile("|".join(f"(?:{p})" for p in (*_EN_STRONG, *(p for v in _OTHER.values() for p in v[0]))))
_APOLOGY = re.compile("|".join(f"(?:{p})" for p in (_EN_APOLOGY, *(v[1] for v in _OTHER.values()))))
_NEGATION = re.compile("|".join(f"(?:{p})" for p in (_EN_NEGATION, *(v[2] for v in _OTHER.values()))))
# what may stand before the refusal in its first sentence: "I understand what you want, but I can't …"
_LEAD_IN = re.compile(
    r"[^.!?\n。！？]{0,120}?(?:,?\s*(?:but|however|aber|pero|mais|ma|mas|但是|但|不过|不過|しかし|"
    r"ですが|が、)\s*,?\s*)"
)
_SENTENCE_END = re.compile(r"[.!?。！？\n]")


def fold(text: str) -> str:
    """Casefolded, NFKC, typographic apostrophes and runs of spaces folded: the form phrases are matched on."""
    text = unicodedata.normalize("NFKC", text).replace("\u2019", "'").replace("\u02bc", "'").casefold()
    return re.sub(r"[ \t]+", " ", text)


def refusal(text: str, context: str = "") -> str | None:
    """The refusal the opening of ``text`` says, or None; a phrase ``context`` (the parent or the instruction)
    already contains is no signal of one."""
    opening = fold(text.lstrip(" \t\r\n*_#>-"))[:OPENING_CHARS]
    found = _opening_refusal(opening)
    if found is None:
        return None
    if found.strip() and found.strip() in fold(context):
        return None
    return found.strip()


def _opening_refusal(opening: str) -> str | None:
    m = _STRONG.match(opening)
    if m:
        return m.group(0)
    m = _APOLOGY.match(opening)
    if m:
        # the apology's own sentence and the next one: "I'm sorry. I can't do that."
        rest = opening[m.end() :]
        ends = [e.end() for e in _SENTENCE_END.finditer(rest)][:2]
        window = rest[: ends[-1]] if len(ends) == 2 else rest
        neg = _NEGATION.search(window)
        if neg:
            return opening[: m.end() + neg.end()]
    m = _LEAD_IN.match(opening)
    if m:
        strong = _STRONG.match(opening, m.end())
        if strong:
            return opening[: strong.end()]
    return None
