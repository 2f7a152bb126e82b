"""Answers that ask back instead of answering: a model that lacks what an instruction refers to asks for it.

An evolution that lost its input ("Rewrite the passage below…" with no passage) or is too vague to answer gets
replies such as "Could you please provide the passage you would like me to rewrite?" or "Sure! What topic should
the poem be about?". Auto Evol-Instruct (Zeng et al., 2024) counts such answers as failed evolutions (loss of key
information). Two signals, both read only in a short answer:

- it asks for input: "please provide …", "could you share …", "I need the text …", "there is no passage …";
- every sentence of it is an affirmation or a question to the user ("Sure! What kind of poem would you like?"): a
  reply that says something first and then offers more ("Paris is the capital. Would you like its history too?")
  answers, and so does one to an instruction that asks for questions (a quiz, interview questions) or a riddle
  (whose question is not put to "you").

A phrase the instruction itself contains is no signal, and neither is a request in the answer to an instruction
that asks for a message (an email asking a supplier for an invoice is a request by design).
"""

from __future__ import annotations

import re

from evol.rules.refusals import fold

# the input a model says it lacks: what an instruction can refer to without including it
_INPUT = (
    r"(?:text|passage|paragraph|sentence|article|essay|story|poem|code|snippet|function|program|script|data|dataset|"
    r"table|list|document|file|attachment|email|message|link|url|image|picture|details|information|context|input|"
    r"content|question|problem|topic|prompt|instruction|example|examples|numbers|values|array|string|query|schema)"
)
_ASK = (
    # "please provide the passage", "kindly share the code"
    r"\b(?:please|kindly)\s+(?:provide|share|send|paste|give|specify|clarify|supply|upload|include|tell me|let me know)\b",
    # "could you (please) provide …", "can you share the code"
    r"\b(?:could|can|would|will) you (?:please |kindly )?(?:provide|share|send|paste|give me|specify|clarify|supply|"
    r"upload|include|tell me (?:what|which|more|the)|let me know (?:what|which|the)|be more specific)\b",
    # "I need the text", "I'll need more details", "I would need you to provide"
    r"\bi(?:'ll| will| would|'d)? need (?:you to (?:provide|share|send|specify|clarify)|(?:a bit |some )?more "
    rf"(?:information|details|context)|(?:the|a|an|your|some|more) (?:\w+ )?{_INPUT})\b",
    # "there is no passage", "I don't see any code", "you haven't provided the text"
    rf"\b(?:there(?:'s| is) no|i (?:don't|do not|can't|cannot) see (?:the|any|a)|you (?:haven't|have not|didn't|did not) "
    rf"(?:provide|include|share|attach)(?:d)?(?: the| any| a)?) (?:\w+ )?{_INPUT}\b",
    # "it seems the passage is missing", "the text was not included"
    rf"\b(?:the|your) (?:\w+ )?{_INPUT}(?: of \w+)? (?:is|seems to be|appears to be|was|were|are) (?:missing|not (?:included|provided|"
    r"attached|shown))\b",
    # other languages: "pourriez-vous fournir", "por favor, proporciona", "bitte geben Sie … an", "请提供"
    r"\b(?:pourriez-vous|pouvez-vous|veuillez) (?:me )?(?:fournir|partager|préciser|envoyer|indiquer)\b",
    r"\b(?:por favor,? )?(?:proporciona|proporcione|comparte|comparta|indica|indique|envía|envíe)(?:me)?\b",
    r"\b(?:podría|podrías|puede|puedes) (?:proporcionar|compartir|indicar|enviar)(?:me)?\b",
    r"\b(?:könnten|können) sie (?:mir )?(?:bitte )?\w* ?(?:geben|senden|mitteilen|bereitstellen|nennen)\b",
    r"\bbitte (?:geben|senden|teilen|nennen) sie\b",
    r"请(?:提供|告诉我|给出|发送|说明)|能否(?:提供|告诉)|您能(?:提供|告诉)",
)
_ASKS_FOR_INPUT = re.compile("|".join(f"(?:{p})" for p in _ASK))
# a sentence that says nothing of its own: "Sure!", "Of course.", "Understood.", "I'd be happy to help."
_AFFIRMATION = re.compile(
    r"^(?:sure|certainly|of course|absolutely|okay|ok|alright|all right|great|got it|understood|no problem|gladly|"
    r"yes|hello|hi|thanks|thank you|i(?:'d| would) (?:be )?(?:happy|glad|delighted) to(?: help)?(?: with that)?|"
    r"i can help(?: with that)?|happy to help|let's do it|i'm ready(?: to help)?|i am ready(?: to help)?)"
    r"(?:[ ,!.]+(?:i(?:'d| would) (?:be )?(?:happy|glad) to help(?: with that)?|i can help(?: with that)?))?[ ,!.:]*$"
)
_SENTENCES = re.compile(r"[^.!?。！？\n]+[.!?。！？]*")
_TO_THE_USER = re.compile(r"\b(?:you|your|you'd|you're)\b")
# an instruction whose answer is a message, which may well ask its reader for something
_ASKS_FOR_A_MESSAGE = re.compile(
    r"\b(?:write|draft|compose|create|prepare|send|reply)\b.{0,60}\b(?:email|e-mail|letter|message|note|memo|reply|"
    r"request|post|tweet|text message|invitation|notice)s?\b"
)
# an instruction whose answer is made of questions
_ASKS_FOR_QUESTIONS = re.compile(
    r"\b(?:question|questions|ask|asks|asking|interview|quiz|survey|questionnaire|riddle)\b"
)
MAX_WORDS = 60  # an answer that asks back is short; a longer one that ends with a question has answered first
#: how a detail opens when the answer only asks back (too vague to answer) rather than asking for missing input:
#: evol optimize tells Auto Evol-Instruct's insufficient qualification from loss of key information by it
ONLY_ASKS = "only asks back: "


def clarification(text: str, instruction: str = "", max_words: int = MAX_WORDS) -> str | None:
    """What shows that ``text`` asks back instead of answering (the phrase, or "only asks"), or None."""
    body = fold(text.strip())
    if not body or len(body.split()) > max_words:
        return None
    asked = fold(instruction)
    found = _ASKS_FOR_INPUT.search(body)
    if found and found.group(0).strip() not in asked and not _ASKS_FOR_A_MESSAGE.search(asked):
        return found.group(0).strip()
    sentences = [s.strip() for s in _SENTENCES.findall(body) if s.strip(" *_-")]
    questions = [s for s in sentences if s.endswith(("?", "？"))]
    if (
        questions
        and all(s in questions or _AFFIRMATION.match(s.strip(" *_-")) for s in sentences)
        and any(_TO_THE_USER.search(q) for q in questions)
        and not _ASKS_FOR_QUESTIONS.search(asked)
    ):
        return ONLY_ASKS + questions[0][:80]
    return None
