"""A scripted evolver, judge, responder and optimizer for the auto profile and ``evol optimize``.

How an evolution fails depends on the method it was asked with: without the phrase GAIN, every instruction
whose hash is even comes back with nothing gained (the judge says Equal); without QUIET, every third one
leaks a section heading into its final instruction. The optimizer's variant 1 adds GAIN to the method, variant
2 adds QUIET, variant 3 is an invalid template (an unknown slot), so a better method is measurably better.
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
NO_FINAL = "NOFINAL"  # a seed with this word is answered without the final section


def fate(instruction: str, method: str) -> str:
    h = hashlib.sha256(instruction.encode()).digest()[0]
    if GAIN not in method and h % 2 == 0:
        return "no_information_gain"
    if QUIET not in method and h % 3 == 0:
        return "prompt_leak"
    return "ok"


def final_for(instruction: str, method: str) -> str:
    """The final instruction the scripted model writes (the e2e tests compare datasets with it)."""
    rule = fate(instruction, method)
    if rule == "no_information_gain":
        return f"{instruction.rstrip('.')}, please."
    extra = f"Also account for {filler(instruction, 40)}."
    return f"{instruction} #Plan# {extra}" if rule == "prompt_leak" else f"{instruction} {extra}"


class AutoScript:
    """Callable script for ScriptedServer; ``evolved`` maps each instruction to the method text it was evolved with."""

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
        return Reply(content=f"Here is a careful answer. {filler(prompt, 400)}")

    def structured(self, instruction: str, method: str) -> str:
        sections = (
            f"#Ways to Complicate#\n1. Add a constraint.\n2. Ask for reasoning.\n\n#Plan#\nUse way 1.\n\n"
            f"#First Rewrite#\n{instruction} (draft)\n\n#Review#\nThe draft is fine but for the marker.\n\n"
        )
        if NO_FINAL in instruction:
            return sections
        return f"{sections}#Final Instruction#\n{final_for(instruction, method)}"

    @staticmethod
    def propose(prompt: str) -> str:
        method = prompt.split("<<<METHOD\n", 1)[1].split("\nMETHOD>>>", 1)[0]
        found = re.search(r"variant (\d+) of", prompt)
        assert found is not None, prompt
        variant = int(found.group(1))
        if variant == 1 and GAIN not in method:
            method = method.replace("\nInstruction:\n", f"\nIn the rewrite, {GAIN}.\n\nInstruction:\n", 1)
        elif variant == 2 and QUIET not in method:
            method = method.replace("\nInstruction:\n", f"\nIn the rewrite, {QUIET}.\n\nInstruction:\n", 1)
        elif variant == 3:
            method = method + "\nTopic: ${topic}\n"
        return f"Here is my proposal.\n\n#New Method#\n{method}"
