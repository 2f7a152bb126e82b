"""A scripted evolver, judge, responder and optimizer for the auto profile and ``evol optimize``.

How an evolution fails depends on the method it was asked with, as Auto Evol-Instruct's failures do. Without the
phrase GAIN, every instruction whose hash is even comes back with nothing gained (the judge says Equal: stagnant
complexity); without QUIET, every third one leaks a section heading into its final instruction (an evol rule);
without KEEP, one in five refers to a table it does not include (the answer asks for it: loss of key information)
and another one in five leaves out for whom it is written (the answer only asks back: insufficient
qualification). One instruction in thirteen is refused whatever the method, so no method fails at nothing.
A method with TIMID changes every instruction by a few words: nothing fails, nothing gains, and
the answer is no longer than the seed's. Every genuine requirement an instruction carries makes its answer longer,
so the complexity figure (answer words over the seed answer's) tells a timid method from a good one.

The optimizer's variant 1 adds GAIN to the method (KEEP once it has GAIN), variant 2 adds QUIET (then KEEP),
variant 3 makes the method timid, variant 4 is an invalid template (an unknown slot), so a better method is
measurably better, and the method that fails least is not the better one.
"""

from __future__ import annotations

import hashlib
import re
import threading

from evol.testing.replies import GIVEN, given_prompt
from evol.testing.server import Reply, last_user
from evol.testing.words import filler

GAIN = "add at least one requirement the instruction did not have"
QUIET = "never copy a section heading into the final instruction"
KEEP = "keep in the final instruction every piece of data and every detail its answer needs"
TIMID = "change the instruction as little as possible"
NO_FINAL = "NOFINAL"  # a seed with this word is answered without the final section
REQUIREMENT = "Also account for"  # how each genuine requirement an evolution adds opens
TABLE = "Using the table of measurements provided, "  # ... but no table: the answer asks for it
AUDIENCE = " Write it for the audience I have in mind."  # ... but which: the answer asks
ANSWER_CHARS = 300  # a seed's answer; each requirement of the instruction adds as much again
ASKS_FOR_TABLE = "Could you please provide the table of measurements you mentioned? I don't see it in your message."
ASKS_FOR_AUDIENCE = "Sure! Who is the audience you have in mind?"
REFUSAL = "I'm sorry, but I can't help with rewriting this instruction."


def refused(instruction: str) -> bool:
    """The evolving model refuses this instruction whatever the method says: a failure no method removes."""
    return hashlib.sha256(instruction.encode()).digest()[1] % 13 == 5


def fate(instruction: str, method: str) -> str:
    """What becomes of ``instruction`` evolved with ``method``: "ok", "timid", or the failure it meets."""
    if refused(instruction):
        return "refused"
    if TIMID in method:
        return "timid"
    h = hashlib.sha256(instruction.encode()).digest()[0]
    if GAIN not in method and h % 2 == 0:
        return "no_information_gain"
    if QUIET not in method and h % 3 == 0:
        return "prompt_leak"
    if KEEP not in method and h % 5 == 1:
        return "loss_of_key_information"
    if KEEP not in method and h % 5 == 3:
        return "insufficient_qualification"
    return "ok"


def final_for(instruction: str, method: str) -> str:
    """The final instruction the scripted model writes (the e2e tests compare datasets with it)."""
    rule = fate(instruction, method)
    if rule == "refused":
        return REFUSAL
    if rule == "timid":
        return f"{instruction} Use plain words."
    if rule == "no_information_gain":
        return f"{instruction.rstrip('.')}, please."
    extra = f"{REQUIREMENT} {filler(instruction, 40)}."
    if rule == "prompt_leak":
        return f"{instruction} #Plan# {extra}"
    if rule == "loss_of_key_information":
        return f"{TABLE}{instruction[:1].lower()}{instruction[1:]} {extra}"
    if rule == "insufficient_qualification":
        return f"{instruction} {extra}{AUDIENCE}"
    return f"{instruction} {extra}"


def answer_for(prompt: str) -> str:
    """The responder's answer: it asks back for what the instruction lacks, else grows with its requirements."""
    if TABLE in prompt:
        return ASKS_FOR_TABLE
    if AUDIENCE in prompt:
        return ASKS_FOR_AUDIENCE
    return f"Here is a careful answer. {filler(prompt, ANSWER_CHARS * (1 + prompt.count(REQUIREMENT)))}"


class AutoScript:
    """Callable script for ScriptedServer; ``kinds`` counts the calls of each kind it answered."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.kinds: dict[str, int] = {}

    def _count(self, kind: str) -> None:
        with self.lock:
            self.kinds[kind] = self.kinds.get(kind, 0) + 1

    def __call__(self, request: dict) -> Reply:
        prompt = last_user(request)
        if "<<<METHOD\n" in prompt and "#New Method#" in prompt:
            self._count("propose")
            return Reply(content=self.propose(prompt))
        if "<<<METHOD\n" in prompt:
            self._count("analyze")
            rules = sorted(set(re.findall(r"eliminated \((\w+)", prompt)))
            return Reply(content="Failures seen: " + (", ".join(rules) or "none") + ".")
        if "First instruction:" in prompt and "Second instruction:" in prompt:
            self._count("judge")
            second = prompt.split("Second instruction:\n", 1)[1].split("\n\nAnswer with", 1)[0]
            return Reply(content="Equal" if second.strip().endswith(", please.") else "Not Equal")
        if "\n<<<\n" in prompt:
            self._count("evolve")
            instruction = prompt.split("\n<<<\n", 1)[1].split("\n>>>", 1)[0]
            return Reply(content=self.structured(instruction, prompt))
        if GIVEN in prompt:  # the general profile: the same model, no method to follow
            self._count("evolve")
            instruction = given_prompt(prompt)
            return Reply(content=final_for(instruction, prompt).replace("#Plan#", "#Rewritten Prompt#"))
        self._count("respond")
        return Reply(content=answer_for(prompt))

    def structured(self, instruction: str, method: str) -> str:
        sections = (
            f"#Ways to Complicate#\n1. Add a constraint.\n2. Ask for reasoning.\n\n#Plan#\nUse way 1.\n\n"
            f"#First Rewrite#\n{instruction} (draft)\n\n#Review#\nThe draft is fine but for the marker.\n\n"
        )
        if refused(instruction):
            return REFUSAL
        if NO_FINAL in instruction:
            return sections
        return f"{sections}#Final Instruction#\n{final_for(instruction, method)}"

    @staticmethod
    def propose(prompt: str) -> str:
        method = prompt.split("<<<METHOD\n", 1)[1].split("\nMETHOD>>>", 1)[0]
        found = re.search(r"variant (\d+) of", prompt)
        assert found is not None, prompt
        variant = int(found.group(1))
        add = None
        if variant == 1:
            add = GAIN if GAIN not in method else KEEP if KEEP not in method else None
        elif variant == 2:
            add = QUIET if QUIET not in method else KEEP if KEEP not in method else None
        elif variant == 3 and TIMID not in method:
            add = TIMID
        elif variant == 4:
            method = method + "\nTopic: ${topic}\n"
        if add is not None:
            method = method.replace("\nInstruction:\n", f"\nIn the rewrite, {add}.\n\nInstruction:\n", 1)
        return f"Here is my proposal.\n\n#New Method#\n{method}"
