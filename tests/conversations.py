"""A scripted model for conversations (``--turns``), for ScriptedServer: it rewrites a turn by adding a requirement,
writes follow-up turns that build on the previous answer (or, for planted seeds, ones that ignore it or repeat
an earlier turn), judges as a careful model would, and answers every turn; it keeps every request, so a test can
check what each stage was shown.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from evol.testing.replies import GIVEN, Reply, last_user

NEXT = "#Next Message#:"
FOLLOW_UP_ASK = 'Reply with "Builds on" or "Ignores"'
EQUALITY_ASK = 'Answer with exactly "Equal" or "Not Equal"'
UNRELATED = "Unrelated: what is the tallest mountain in Europe, and how high is it?"

# ShareGPT seeds of one to three user turns; seed 3's follow-ups ignore the answer, seed 4's repeat the turn before
SEEDS: list[dict] = [
    {"conversations": [{"from": "human", "value": "Explain what a hash table is, in two short paragraphs."}]},
    {
        "conversations": [
            {"from": "system", "value": "You are a patient tutor for first-year students."},
            {"from": "human", "value": "What does the derivative of a function tell us?"},
            {"from": "gpt", "value": "It tells us how fast the function's value changes at each point: its slope."},
            {"from": "human", "value": "Show it on f(x) = x squared at x = 3."},
        ]
    },
    {
        "messages": [
            {"role": "user", "content": "Suggest a name for a bakery that sells sourdough bread."},
            {"role": "assistant", "content": "How about 'Rise & Crumb'? It hints at the slow rise of sourdough."},
            {"role": "user", "content": "Give me three more, each with a one-line reason."},
            {"role": "assistant", "content": "Wild Yeast Co., Crust Theory and The Slow Loaf, each for its craft."},
            {"role": "user", "content": "Which of them works best for a shop near a university, and why?"},
        ]
    },
    {"conversations": [{"from": "human", "value": "Write a haiku about autumn leaves falling in a park."}]},
    {"conversations": [{"from": "human", "value": "List four ways to keep a sourdough starter healthy."}]},
]


def write_seeds(path: Path) -> Path:
    path.write_text("".join(json.dumps(s) + "\n" for s in SEEDS), encoding="utf-8")
    return path


def seed_turns(seed: dict) -> list[dict]:
    """A seed's turns as OpenAI chat messages."""
    turns = seed.get("conversations") or seed["messages"]
    role = {"human": "user", "gpt": "assistant", "system": "system"}
    return [
        {"role": role.get(t.get("from", ""), t.get("role")), "content": t.get("value", t.get("content"))} for t in turns
    ]


def first_user(seed: dict) -> str:
    return next(t["content"] for t in seed_turns(seed) if t["role"] == "user")


class ConversationModel:
    """Callable script for ScriptedServer."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[tuple[str, list[dict]]] = []  # (stage, messages) of every request

    def __call__(self, request: dict) -> Reply:
        messages = request.get("messages", [])
        prompt = last_user(request)
        if NEXT in prompt:
            stage, content = "follow_up", self.follow_up(prompt)
        elif GIVEN in prompt:
            stage, content = "evolve", self.rewrite(prompt)
        elif FOLLOW_UP_ASK in prompt:
            stage = "follow_up_judge"
            content = "Ignores" if UNRELATED in prompt else "Builds on"
        elif EQUALITY_ASK in prompt:
            stage, content = "judge", "Not Equal"
        else:
            stage = "respond"
            earlier = sum(m["role"] == "user" for m in messages) - 1
            content = f"Here is a full answer to this, building on {earlier} earlier turn(s): {prompt[:60]} ... done."
        with self.lock:
            self.requests.append((stage, messages))
        return Reply(content=content)

    @staticmethod
    def rewrite(prompt: str) -> str:
        parent = prompt.split(GIVEN, 1)[1].rsplit("\n\n#", 1)[0].strip()
        return f"{parent} Keep the answer under 120 words and give one concrete example."

    @staticmethod
    def follow_up(prompt: str) -> str:
        asked = prompt.split(GIVEN, 1)[1].split("\n\nThe assistant answered:", 1)[0].strip()
        if "haiku" in asked.lower():  # seed 3: a follow-up that ignores the answer
            return UNRELATED
        if "sourdough starter" in asked.lower():  # seed 4: what was just asked, again
            return asked
        return f"Your answer helps. Now take the example from your answer and apply it to a harder case ({len(asked)})."

    def of_stage(self, stage: str) -> list[list[dict]]:
        with self.lock:
            return [m for s, m in self.requests if s == stage]
