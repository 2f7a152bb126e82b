"""A scripted model that behaves as current chat models do, for ScriptedServer.

It evolves with genuine small additions (10-20 words, long parents too) and fresh in-breadth prompts, rewords
some instructions with nothing gained, refuses in several wordings,
wraps its rewrites in chatter (introductions, markdown labels, quotes, fences, closing remarks), sometimes
offers several versions or explains its changes, and answers with refusals (with and without "sorry", in
several languages) or with long helpful answers that happen to apologise. As the equality judge it decides
truthfully from the two texts (a rewording that adds no word of substance is equal) and writes its verdict
in many forms: plain, in markdown, explained, after a reasoning block, cut off at max_tokens, reasoned aloud,
or unreadable twice. What it does is decided by the seed and the round, so a test knows each candidate's fate
in advance.
"""

from __future__ import annotations

import threading
from pathlib import Path

from evol.seeds import load_seeds
from evol.testing.replies import GIVEN, given_prompt
from evol.testing.server import Reply, last_user
from evol.text import words

FIRST, SECOND, ASK = "First instruction:\n", "Second instruction:\n", "\n\nAnswer with"
SHIPPED = Path(__file__).resolve().parent.parent / "datasets" / "seeds" / "self_instruct_seed_tasks.jsonl"

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
    'Of course!\n\n"{}"',
    "```\n{}\n```",
    "Here's a tougher take on it:\n\n> {}\n\nI've added one requirement.",
)
BAD_WRAPS = (  # chatter that cannot be taken off: several versions, an explanation of the changes
    "Here are two options:\n\nOption 1: {}\n\nOption 2: {} Use bullet points.",
    "Here's a harder version:\n\n{}\n\nExplanation: I added a requirement so the answer has to go deeper.",
    "{}\n\nChanges made:\n- added a constraint\n- kept the original topic",
)
ANSWER = (
    "Here is a careful answer. The topic has three parts worth separating. First, the background: what is "
    "known, who studied it and which measurements the claims rest on. Second, the mechanism: how the parts "
    "interact, step by step, with one worked example that uses round numbers so the arithmetic stays easy "
    "to follow. Third, the limits: where the explanation stops holding and what a careful reader should "
    "check before relying on it. In short, the answer depends on the details, and the example shows how."
)
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

# a no-gain rewording: the parent behind a polite opener, which adds no word of substance
REWORDS = ("Please do the following. {}", "Could you help me with this? {}", "I would like you to do this: {}")
FILLER = frozenset(w for r in REWORDS for w in words(r.format("")))

THINK_CUT = "<think>\nLet me compare the two instructions carefully. The first asks for"
# the equality judge's answer in each form: (equal, not equal)
VERDICTS = {
    "plain": ("Equal", "Not Equal"),
    "bold": ("**Equal**", "**Not equal**"),
    "explained": ("Equal. Only the wording is different.", "Not Equal. The second adds a requirement the first lacks."),
    "think": (
        "<think>\nThe second says the same thing with a polite opening.\n</think>\n\nEqual",
        "<think>\nThe second asks for more than the first does.\n</think>\n\nNot Equal",
    ),
    "aloud": (
        "The first instruction asks for one task. The second asks for it again in other words.\n\nVerdict: Equal",
        "The first instruction asks for one task. The second adds a further requirement.\n\nVerdict: Not Equal",
    ),
}
UNCLEAR = ("It depends on what the reader needs.", "Hard to say without more context.")  # no verdict, twice

EVOLVE_PLAN = (
    "clean",
    "refuse",
    "wrap",
    "reword",
    "clean",
    "bad_wrap",
    "wrap",
    "clean",
    "refuse",
    "wrap",
    "reword",
    "clean",
    "wrap",
)
# "cut": a reasoning block cut off at max_tokens, a clean verdict on the retry; "unclear": no verdict either time
JUDGE_PLAN = (
    "plain",
    "think",
    "bold",
    "cut",
    "explained",
    "aloud",
    "plain",
    "think",
    "unclear",
    "bold",
    "aloud",
    "cut",
    "explained",
    "plain",
)
RESPOND_PLAN = ("answer", "refused", "sorry_long", "answer", "refused_sorry", "refused", "answer", "sorry_long")


def evolve_kind(index: int, round_no: int) -> str:
    return EVOLVE_PLAN[(index * 7 + round_no * 3) % len(EVOLVE_PLAN)]


def respond_kind(index: int, round_no: int) -> str:
    return RESPOND_PLAN[(index * 5 + round_no) % len(RESPOND_PLAN)]


def judge_form(index: int, round_no: int) -> str:
    return JUDGE_PLAN[(index * 5 + round_no * 4) % len(JUDGE_PLAN)]


def long_seeds(min_chars: list[int], tag: str = "case") -> list[str]:
    """One long seed per entry of ``min_chars``: shipped seed instructions run together (none shared, so no
    two are near copies), each opening with "(tag i)"."""
    shipped = [s.instruction.replace("\n", " ") for s in load_seeds(SHIPPED).seeds]
    out, k = [], 0
    for i, n in enumerate(min_chars):
        parts = [f"({tag} {i})"]
        while sum(len(p) + 1 for p in parts) < n:
            parts.append(shipped[k])
            k += 1
        out.append(" ".join(parts))
    return out


def expected_rule(index: int, round_no: int) -> str | None:
    """The rule that eliminates seed ``index``'s candidate in ``round_no``, or None if it is kept."""
    kind = evolve_kind(index, round_no)
    if kind == "refuse":
        return "refused_evolution"
    if kind == "bad_wrap":
        return "wrapped_evolution"
    if judge_form(index, round_no) == "unclear":
        return "judge_unclear"
    if kind == "reword":
        return "no_information_gain"
    return {"refused": "refused_response", "refused_sorry": "sorry_short_response"}.get(respond_kind(index, round_no))


class SeedTracker:
    """What a scripted model knows of the texts it was given or wrote: each one's (seed, round), and each seed's
    evolution attempts so far, which tell the round of the next one; ``seeds`` in file order."""

    def __init__(self, seeds: list[str]):
        self.known = {text: (i, 0) for i, text in enumerate(seeds)}  # every text it wrote or was given -> (seed, round)
        self.attempts: dict[int, int] = {}
        self.lock = threading.Lock()

    def origin(self, text: str) -> tuple[int, int]:
        if text in self.known:
            return self.known[text]
        # the responder's prompt may go through a profile's respond template: find the instruction inside it
        inside = [t for t in self.known if t in text]
        return self.known[max(inside, key=len)]

    def attempt(self, parent: str) -> tuple[int, int]:
        """(seed, round) of the evolution of ``parent`` asked for now; call it holding ``lock``."""
        index, _ = self.origin(parent)
        self.attempts[index] = round_no = self.attempts.get(index, 0) + 1
        return index, round_no


class RealisticModel(SeedTracker):
    """Callable script for ScriptedServer; ``seeds`` are the seed instructions in file order."""

    def __init__(self, seeds: list[str]):
        super().__init__(seeds)
        self.cores: dict[tuple[int, int], str] = {}  # the clean rewrite inside each wrapped or plain evolution
        self.responder_prompts: list[str] = []
        self.judged: dict[tuple[int, int], list[str]] = {}  # the judge's answers, as sent, per (seed, round)

    def __call__(self, request: dict) -> Reply:
        prompt = last_user(request)
        if GIVEN in prompt:
            parent = given_prompt(prompt)
            with self.lock:
                index, round_no = self.attempt(parent)
                return Reply(content=self.evolve(prompt, parent, index, round_no))
        if FIRST in prompt and SECOND in prompt:
            return self.judge(prompt)
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

    def judge(self, prompt: str) -> Reply:
        """Equal exactly when the second instruction adds no word of substance to the first."""
        first = prompt.split(FIRST, 1)[1].split("\n\n" + SECOND, 1)[0]
        second = prompt.split(SECOND, 1)[1].rsplit(ASK, 1)[0]
        equal = set(words(second)) - set(words(first)) <= FILLER
        with self.lock:
            key = self.known[second]
            answers = self.judged.setdefault(key, [])
            form = judge_form(*key)
            finish = "stop"
            if form == "unclear":
                content = UNCLEAR[len(answers) % 2]
            elif form == "cut" and not answers:
                content, finish = THINK_CUT, "length"
            else:
                content = VERDICTS["plain" if form == "cut" else form][0 if equal else 1]
            answers.append(content)
        return Reply(content=content, finish_reason=finish)

    def evolve(self, prompt: str, parent: str, index: int, round_no: int) -> str:
        pick = index + round_no
        kind = evolve_kind(index, round_no)
        if kind == "reword":
            core = REWORDS[pick % len(REWORDS)].format(parent)
        elif "#Created Prompt#" in prompt:  # in-breadth: a fresh, rarer prompt in the same domain
            # distinct for every seed (topic and addition) and every round (twist): never a near-copy of another
            core = (
                f"{FRESH[index % len(FRESH)]} {ADDITIONS[index // len(FRESH) % len(ADDITIONS)]} "
                f"{TWISTS[round_no % len(TWISTS)]}"
            )
        else:
            # a requirement the parent does not have yet (an in-breadth prompt already carries one)
            fresh = [a for k in range(len(ADDITIONS)) if (a := ADDITIONS[(pick + k) % len(ADDITIONS)]) not in parent]
            core = f"{parent} {fresh[0]}"
        self.cores[index, round_no] = core
        self.known[core] = (index, round_no)
        if kind == "refuse":
            return REFUSALS[pick % len(REFUSALS)]
        if kind == "wrap":
            # quotes round a text that holds quotes of its own are rightly left on (they may be its own)
            wraps = [w for w in WRAPS if not ('"{}"' in w and '"' in core)]
            return wraps[pick % len(wraps)].format(core)
        if kind == "bad_wrap":
            return BAD_WRAPS[pick % len(BAD_WRAPS)].format(core, core)
        return core
