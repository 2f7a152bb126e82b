"""A scripted model whose answers have planted quality, for the answer stage (candidates, ranking, evolution).

Every answer carries its quality as a tag ``[qN]``; the ranking judge reads the tag and writes the score in the
forms real judges use (two lines as asked, bold, "N/10" in a sentence, after a reasoning block, or cut off at
max_tokens the first time). Quality comes from the responding model's name (``m-good`` 9, ``m-mid`` 6,
``m-bad`` 3; ``m-refuse`` refuses, ``m-garble`` writes answers the judge cannot grade); the one default model
samples qualities 5, 8, 3, 6 in turn for the same prompt. An improved answer's quality depends on the direction
asked for: deeper +2, helpful and detailed +1, relevant 0, creative -2. Everything but the default model's
sampling is a function of the request alone, so an interrupted run and an uninterrupted one meet the same answers.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import Counter

from evol.testing.replies import GIVEN, given_prompt
from evol.testing.server import Reply, last_user
from evol.testing.words import filler

QUALITY = {"m-good": 9, "m-mid": 6, "m-bad": 3}
SAMPLED = (5, 8, 3, 6)
DELTA = {
    "helps the person who asked more": ("helpful", 1),
    "bears on what was asked": ("relevant", 0),
    "goes deeper": ("deeper", 2),
    "more original": ("creative", -2),
    "more useful detail": ("detailed", 1),
}
_TAG = re.compile(r"\[q(\d+|\?)\]")


def digest(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


def answer(key: str, q: int | str, intro: str = "Sure! Here's an answer.") -> str:
    return f"{intro}\n\n{filler(key, 220)} [q{q}]"


def quality(text: str) -> int | None:
    found = _TAG.findall(text)
    return int(found[-1]) if found and found[-1] != "?" else None


def rank_reply(text: str, max_tokens: int) -> Reply:
    """The judge's verdict on an answer, in one of five realistic forms chosen by the answer."""
    q = quality(text)
    if q is None:
        return Reply(content="I cannot grade this answer without knowing more about what the user needed.")
    form = digest(text) % 5
    if form == 0:
        return Reply(content=f"Reason: The answer is accurate and addresses the request.\nScore: {q}")
    if form == 1:
        return Reply(
            content=f"<think>\nIt covers the main points; maybe a 5? Score: 5... no, look again.\n</think>\n\n"
            f"Reason: solid and specific.\nScore: **{q}**"
        )
    if form == 2:
        return Reply(content=f"**Score:** {q}/10\n\n**Reason:** clear structure, some gaps.")
    if form == 3 and max_tokens <= 512:  # a reasoning judge cut off mid-thought; the retry has twice the room
        return Reply(
            content="<think>\nLet me weigh each part of this answer carefully. First, the opening",
            finish_reason="length",
        )
    return Reply(content=f"I would rate this answer {q}/10 because it handles the main request.")


class AnswerScript:
    """Callable script for ScriptedServer; ``counts`` tallies requests by kind."""

    def __init__(self):
        self.lock = threading.Lock()
        self.sampled: Counter = Counter()
        self.counts: Counter = Counter()

    def kind(self, prompt: str) -> str:
        if GIVEN in prompt:
            return "evolve"
        if "First instruction:" in prompt:
            return "judge"
        if "Reply in exactly two lines" in prompt:
            return "rank"
        if "Current answer:" in prompt:
            return "evolve_answer"
        return "respond"

    def __call__(self, request: dict) -> Reply:
        prompt = last_user(request)
        kind = self.kind(prompt)
        with self.lock:
            self.counts[kind] += 1
        if kind == "evolve":
            parent = given_prompt(prompt).strip()
            word = filler(parent, 1).split()[0]
            return Reply(content=f"{parent} Also give one concrete example that involves a {word}.")
        if kind == "judge":
            return Reply(content="<think>The second adds a requirement.</think>\nNot Equal")
        if kind == "rank":
            shown = prompt.split("Answer:\n", 1)[1].rsplit("\n\nReply in exactly", 1)[0]
            return rank_reply(shown, int(request.get("max_tokens") or 0))
        if kind == "evolve_answer":
            current = prompt.split("Current answer:\n", 1)[1]
            flat = " ".join(prompt.split())  # the templates wrap their lines anywhere
            name, delta = next(v for k, v in DELTA.items() if k in flat)
            q = max(1, min(10, (quality(current) or 5) + delta))
            return Reply(content=answer(f"{current[:80]}:{name}", q, "Here is the improved answer:"))
        model = request.get("model")
        if model == "m-refuse":
            return Reply(content="I'm sorry, but I can't help with that.")
        if model == "m-garble":
            return Reply(content=answer(f"{prompt}:garble", "?"))
        if model in QUALITY:
            return Reply(content=answer(f"{prompt}:{model}", QUALITY[model]))
        with self.lock:  # one model sampled several times: each draw of the same prompt gets the next quality
            n = self.sampled[prompt]
            self.sampled[prompt] += 1
        return Reply(content=answer(f"{prompt}:{n}", SAMPLED[n % len(SAMPLED)]))
