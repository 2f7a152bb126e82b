"""A scripted LLM that plays the Evol-Instruct method, with planted failures at known (seed, round) places.

It recognises the three kinds of request by the prompt templates' markers, tags every evolution with its
seed (so it knows which seed a later request belongs to), and counts evolve requests per seed to know the
round. The tests compute the expected rule for each candidate from the same table.
"""

from __future__ import annotations

import re
import threading

from evol.testing.replies import GIVEN, given_prompt
from evol.testing.server import Reply, last_user
from evol.testing.words import filler


def planted(index: int, round_no: int) -> str | None:
    """The rule planted for seed ``index`` at ``round_no``, or None for a normal answer."""
    if index == 0:
        return None
    k = index % 11
    table = {
        (1, 1): "empty_evolution",
        (2, 1): "truncated_evolution",
        (3, 2): "identical_to_parent",
        (4, 1): "prompt_leak",
        (5, 2): "no_information_gain",
        (6, 1): "sorry_short_response",
        (7, 3): "stopwords_only_response",
        (8, 1): "empty_response",
        (9, 2): "truncated_response",
        (0, 3): "backend_error",
    }
    if (k, round_no) in table:
        return table[(k, round_no)]
    if k == 10 and round_no == 1:
        # copies of the previous seed's first evolution: exact on even tens, near on odd ones
        return "exact_duplicate" if (index // 11) % 2 == 0 else "near_duplicate"
    return None


class EvolScript:
    """Callable script for ScriptedServer; ``seeds`` are the seed instructions in file order."""

    def __init__(self, seeds: list[str]):
        self.index = {text.casefold(): i for i, text in enumerate(seeds)}
        self.seeds = seeds
        self.attempts: dict[int, int] = {}
        self.lock = threading.Lock()

    def seed_of(self, text: str) -> int:
        tag = re.search(r"\[seed:(\d+) r:\d+\]", text, re.IGNORECASE)
        if tag:
            return int(tag.group(1))
        return self.index[text.strip().casefold()]  # a seed itself

    def evolve(self, parent: str, index: int, round_no: int) -> str:
        """A rewrite that shares little with its parent, tagged with its seed so later requests can be traced; the
        seed's input (the lines after its instruction) stays with it, as a rewrite must keep it (``lost_input``)."""
        head, _, given = self.seeds[index].partition("\n")
        text = f"{filler(f'{index}:{round_no}', 150)} [seed:{index} r:{round_no}] {head[:100]}"
        return f"{text}\n{given}" if given else text

    def __call__(self, request: dict) -> Reply:
        prompt = last_user(request)
        if GIVEN in prompt:
            parent = given_prompt(prompt)
            index = self.seed_of(parent)
            with self.lock:
                self.attempts[index] = self.attempts.get(index, 0) + 1
                round_no = self.attempts[index]
            rule = planted(index, round_no)
            if index % 11 == 0 and index > 0 and "r:2]" in parent:
                # decided by the request itself, not the counter, so a resumed run meets the same failure
                rule = "backend_error"
            evolved = self.evolve(parent, index, round_no)
            if rule == "empty_evolution":
                return Reply(content="  ")
            if rule == "truncated_evolution":
                return Reply(content=evolved[: len(evolved) // 2], finish_reason="length")
            if rule == "identical_to_parent":
                return Reply(content=parent)
            if rule == "prompt_leak":
                return Reply(content=f"{evolved} Keep the #Rewritten Prompt# short.")
            if rule == "backend_error":
                return Reply(status=400, content="this request is not allowed")
            if rule in ("exact_duplicate", "near_duplicate"):
                source = self.evolve(self.seeds[index - 1], index - 1, 1)
                if rule == "exact_duplicate":  # same words, other case and punctuation
                    return Reply(content=source.upper() + "!!")
                return Reply(content=source[:-1] + ", please.")
            return Reply(content=evolved)
        if "First instruction:" in prompt and "Second instruction:" in prompt:
            second = prompt.split("Second instruction:\n", 1)[1]
            index = self.seed_of(second)
            rule = planted(index, self.attempts.get(index, 0))
            return Reply(content="Equal" if rule == "no_information_gain" else "Not Equal")
        index = self.seed_of(prompt)
        rule = planted(index, self.attempts.get(index, 0))
        if rule == "sorry_short_response":
            return Reply(content="Sorry, I cannot help with that request.")
        if rule == "stopwords_only_response":
            return Reply(content="It is what it is, and that is that.")
        if rule == "empty_response":
            return Reply(content="")
        if rule == "truncated_response":
            return Reply(content="The answer begins", finish_reason="length")
        return Reply(content=f"Here is a careful answer. {filler(f'answer:{prompt}', 400)}")
