"""A scripted model that behaves as current chat models do, for ScriptedServer.

It evolves with genuine small additions and fresh in-breadth prompts, but also refuses in several wordings,
wraps its rewrites in chatter (introductions, markdown labels, quotes, fences, closing remarks), sometimes
offers several versions or explains its changes, and answers with refusals (with and without "sorry", in
several languages) or with long helpful answers that happen to apologise. What it does is decided by the
seed and the round (``plan``), so a test knows each candidate's fate in advance.
"""

from __future__ import annotations

import threading

from evol.testing.server import Reply, last_user

GIVEN = "#Given Prompt#:\n"

# small genuine additions, one per (seed, round): long enough that a rewrite is not a near-copy of its parent
ADDITIONS = (
    "Keep the answer under 150 words and give one concrete example from everyday life.",
    "Explain each step of your reasoning before you state the final conclusion.",
    "Compare two different approaches and say which one you would choose and why.",
    "Include a short table that summarises the main points in three rows.",
    "Address the question to a reader who is twelve years old, avoiding jargon.",
    "Point out one common misconception about this topic and correct it.",
)
FRESH = (
    "Describe how medieval bell founders tuned church bells and which alloys they preferred.",
    "Explain how lichens survive on bare Antarctic rock through the polar winter.",
    "Write a short guide to reading the weather from the shape of cirrus clouds.",
    "Summarise how the Inca used knotted cords to keep accounts of harvests.",
    "Outline how glassblowers in Murano made millefiori beads by hand.",
    "Explain why some desert frogs can stay buried for years between rains.",
)
REFUSALS = (
    "I'm sorry, but I can't help with making this prompt more complex.",
    "I cannot create a harder version of this prompt.",
    "As an AI language model, I am not able to rewrite this instruction.",
    "I’m unable to make this instruction more difficult without changing its meaning.",
    "I won't rewrite this prompt.",
    "Unfortunately, I cannot provide a rewritten version of this request.",
    "抱歉，我无法改写这个指令。",
)
TWISTS = (
    "Finish with a question a specialist would still find hard to answer.",
    "Mention one historical source and say how reliable it is.",
    "Close with a practical tip that a beginner could try at home.",
)
WRAPS = (  # each wraps a clean rewrite ({}) that should be kept once unwrapped
    "Sure! Here's a more challenging version of the prompt:\n\n{}",
    "Here is the rewritten instruction:\n{}",
    "Certainly. A harder version could be: {}",
    "**Rewritten Prompt:**\n{}",
    "{}\n\nThis version adds a constraint that makes the answer more specific.",
    "{} Let me know if you'd like it even harder!",
    "Of course!\n\n\"{}\"",
    "```\n{}\n```",
    "Here's a tougher take on it:\n\n> {}\n\nI've added one requirement.",
)
BAD_WRAPS = (  # chatter that cannot be taken off: several versions, an explanation of the changes
    "Here are two options:\n\nOption 1: {}\n\nOption 2: {} Use bullet points.",
    "Here's a harder version:\n\n{}\n\nExplanation: I added a requirement so the answer has to go deeper.",
    "{}\n\nChanges made:\n- added a constraint\n- kept the original topic",
)
ANSWER = ("Here is a careful answer. The topic has three parts worth separating. First, the background: what is "
          "known, who studied it and which measurements the claims rest on. Second, the mechanism: how the parts "
          "interact, step by step, with one worked example that uses round numbers so the arithmetic stays easy "
          "to follow. Third, the limits: where the explanation stops holding and what a careful reader should "
          "check before relying on it. In short, the answer depends on the details, and the example shows how.")
SORRY_LONG = (  # helpful answers that say sorry (or "I can't") in passing: kept, as the paper intends
    "Sorry for the long answer, but the details matter here. " + ANSWER,
    "I can't see your data, but this approach works in most cases. " + ANSWER,
    "Lo siento por la espera. " + ANSWER,
)
REFUSED_SORRY = ("Sorry, I cannot help with that request.", "I'm sorry, but I can't assist with that.")
REFUSED = (  # refused answers without the English word "sorry"
    "I can't help with that request.",
    "As an AI language model, I cannot provide that.",
    "抱歉，我无法提供这方面的帮助。",
    "申し訳ありませんが、その質問にはお答えできません。",
    "Lo siento, pero no puedo ayudarte con eso.",
    "Je suis désolé, mais je ne peux pas répondre à cette demande.",
    "Es tut mir leid, aber ich kann Ihnen dabei nicht helfen.",
    "Ich kann Ihnen dabei nicht helfen.",
)

EVOLVE_PLAN = ("clean", "refuse", "wrap", "clean", "bad_wrap", "wrap", "clean", "refuse", "wrap", "clean", "wrap")
RESPOND_PLAN = ("answer", "refused", "sorry_long", "answer", "refused_sorry", "refused", "answer", "sorry_long")


def evolve_kind(index: int, round_no: int) -> str:
    return EVOLVE_PLAN[(index * 7 + round_no * 3) % len(EVOLVE_PLAN)]


def respond_kind(index: int, round_no: int) -> str:
    return RESPOND_PLAN[(index * 5 + round_no) % len(RESPOND_PLAN)]


def expected_rule(index: int, round_no: int) -> str | None:
    """The rule that eliminates seed ``index``'s candidate in ``round_no``, or None if it is kept."""
    kind = evolve_kind(index, round_no)
    if kind == "refuse":
        return "refused_evolution"
    if kind == "bad_wrap":
        return "wrapped_evolution"
    return {"refused": "refused_response", "refused_sorry": "sorry_short_response"}.get(respond_kind(index, round_no))


class RealisticModel:
    """Callable script for ScriptedServer; ``seeds`` are the seed instructions in file order."""

    def __init__(self, seeds: list[str]):
        self.known = {text: (i, 0) for i, text in enumerate(seeds)}  # every text it wrote or was given -> (seed, round)
        self.attempts: dict[int, int] = {}
        self.cores: dict[tuple[int, int], str] = {}  # the clean rewrite inside each wrapped or plain evolution
        self.responder_prompts: list[str] = []
        self.lock = threading.Lock()

    def origin(self, text: str) -> tuple[int, int]:
        if text in self.known:
            return self.known[text]
        # the responder's prompt may go through a profile's respond template: find the instruction inside it
        inside = [t for t in self.known if t in text]
        return self.known[max(inside, key=len)]

    def __call__(self, request: dict) -> Reply:
        prompt = last_user(request)
        if GIVEN in prompt:
            parent = prompt.split(GIVEN, 1)[1].rsplit("\n\n#", 1)[0]
            with self.lock:
                index, _ = self.origin(parent)
                self.attempts[index] = round_no = self.attempts.get(index, 0) + 1
                return Reply(content=self.evolve(prompt, parent, index, round_no))
        if "First instruction:" in prompt and "Second instruction:" in prompt:
            return Reply(content="Not Equal")
        with self.lock:
            self.responder_prompts.append(prompt)
            index, round_no = self.origin(prompt)
        kind = respond_kind(index, round_no) if round_no else "answer"
        pick = index + round_no
        if kind == "refused":
            return Reply(content=REFUSED[pick % len(REFUSED)])
        if kind == "refused_sorry":
            return Reply(content=REFUSED_SORRY[pick % len(REFUSED_SORRY)])
        if kind == "sorry_long":
            return Reply(content=SORRY_LONG[pick % len(SORRY_LONG)])
        return Reply(content=ANSWER)

    def evolve(self, prompt: str, parent: str, index: int, round_no: int) -> str:
        pick = index + round_no
        if "#Created Prompt#" in prompt:  # in-breadth: a fresh, rarer prompt in the same domain
            # distinct for every seed (topic and addition) and every round (twist): never a near-copy of another
            core = (f"{FRESH[index % len(FRESH)]} {ADDITIONS[index // len(FRESH) % len(ADDITIONS)]} "
                    f"{TWISTS[round_no % len(TWISTS)]}")
        else:
            core = f"{parent} {ADDITIONS[pick % len(ADDITIONS)]}"
        kind = evolve_kind(index, round_no)
        self.cores[index, round_no] = core
        self.known[core] = (index, round_no)
        if kind == "refuse":
            return REFUSALS[pick % len(REFUSALS)]
        if kind == "wrap":
            return WRAPS[pick % len(WRAPS)].format(core)
        if kind == "bad_wrap":
            return BAD_WRAPS[pick % len(BAD_WRAPS)].format(core, core)
        return core
