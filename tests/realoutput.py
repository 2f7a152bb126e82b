"""A scripted model that writes what real chat models write around an Evol-Instruct rewrite, for ScriptedServer.

Its forms come from real Code Evol-Instruct outputs of a GPT-3.5-class model and from the embedded 135M model's
quick start: section markers and labels in their own words ("#Rewritten Test#", "#Given Test#", "Updated
Prompt:"), the original and the rewrite in one answer, "the given test", spans of the evolving prompt copied in,
talk about the instruction instead of one, and answers that ask back for the input an evolution lost. Beside them
it writes the look-alikes a rule must keep: genuine rewrites with markdown headings, C preprocessor lines or "the
given array", a leading label that can be taken off, and full answers that end by offering more. What it does is
decided by the seed and the round, so a test knows each candidate's fate in advance.
"""

from __future__ import annotations

from evol.testing.replies import GIVEN, Reply, given_prompt
from evol.testing.server import last_user

from .realistic import SeedTracker

FIRST, SECOND = "First instruction:\n", "Second instruction:\n"

# small genuine additions, one per (seed, round), each distinct enough that no two rewrites are near copies
ADDITIONS = (
    "Handle an empty input by raising a ValueError with a clear message.",
    "Return the result together with the number of comparisons made.",
    "Do it in a single pass over the data, using O(1) extra memory.",
    "Explain the time complexity of your solution in one short paragraph.",
    "Add three unit tests that cover the edge cases you can think of.",
    "Accept the input as a generator as well as a list.",
)
# genuine rewrites that only look like leaks: each keeps every word of its parent and adds a real requirement
LOOKALIKES = (
    "{parent} Structure the answer under the markdown headings\n## Approach\n## Code\n## Tests",
    "{parent} Write it in C, starting from\n#include <stdio.h>\n#define MAX 100",
    "{parent} Assume the given array may hold duplicates, and keep their order stable.",
    "Rewritten Test:\n{parent} Also report how long the computation took in milliseconds.",
    "**Updated Prompt:** {parent} Also log each step of the computation to standard error.",
)
# what a real model leaves of the prompt in its rewrite, and the rule that must catch it
LEAKS = (
    ("{core}\n\n#Erroneous Code Reference#\ndef solve(xs):\n    return xs.sort()", "prompt_leak"),
    ("#Given Test#\n{parent}\n\n#Rewritten Test#\n{core}", "prompt_leak"),
    ("{parent}\n\nRewritten Test:\n{core}", "prompt_leak"),
    ("{core}\n\n#Updated Test#", "prompt_leak"),
    ("Modify the given test so that it also works on nested lists. {core}", "prompt_leak"),
    (
        "{core} Add new constraints and requirements to the original problem, using roughly 10 more words.",
        "prompt_leak",
    ),
    (
        "The new instruction is indeed quite challenging. To make it harder, you just have to add: {addition}",
        "meta_commentary",
    ),
    ("How to make it harder: {addition}", "meta_commentary"),
)
ASK_BACK = (
    "Could you please provide the code you would like me to work with?",
    "Sure! Which programming language would you like the solution in?",
    "I'd be happy to help! However, I don't see any data attached. Could you share it?",
)
ANSWER = (
    "Here is a solution that walks the input once and keeps the running result in a variable, then returns it; "
    "it runs in linear time and needs no extra memory beyond a few variables, and the tests below cover the empty "
    "input, a single element and a long list with repeated values."
)
OFFER = " Would you like me to add a version that works on streams as well?"
# an English instruction answered in another language, as small and multilingual models do
FOREIGN = (
    "Voici une solution qui parcourt l'entrée une seule fois et garde le résultat dans une variable, puis le "
    "renvoie. Elle s'exécute en temps linéaire et les tests couvrent une liste vide et une longue liste.",
    "Aquí tienes una solución que recorre la entrada una sola vez y guarda el resultado en una variable, y "
    "luego lo devuelve. Se ejecuta en tiempo lineal y las pruebas cubren una lista vacía y una lista larga.",
    "下面的解法只遍历一次输入，把当前结果保存在一个变量里，最后返回它。它的时间复杂度是线性的，测试覆盖了空列表和很长的列表。",
)
# per (seed, round): what the evolution is, and what the answer does
EVOLVE_PLAN = ("genuine", "lookalike", "leak", "genuine", "leak", "lookalike", "genuine", "leak")
RESPOND_PLAN = ("answer", "offer", "answer", "ask_back", "answer", "offer", "answer", "foreign")


def evolve_kind(index: int, round_no: int) -> str:
    return EVOLVE_PLAN[(index * 3 + round_no) % len(EVOLVE_PLAN)]


def respond_kind(index: int, round_no: int) -> str:
    return RESPOND_PLAN[(index * 2 + round_no * 5) % len(RESPOND_PLAN)]


def pick(index: int, round_no: int, n: int) -> int:
    return (index * 7 + round_no * 2) % n  # every form of each list occurs over 20 seeds and 3 rounds


def expected_rule(index: int, round_no: int) -> str | None:
    """The rule that eliminates seed ``index``'s candidate in ``round_no``, or None if it is kept."""
    if evolve_kind(index, round_no) == "leak":
        return LEAKS[pick(index, round_no, len(LEAKS))][1]
    if respond_kind(index, round_no) == "ask_back":
        return "clarification_response"
    if respond_kind(index, round_no) == "foreign":
        return "language_changed_response"
    return None


class RealOutputModel(SeedTracker):
    """Callable script for ScriptedServer; ``seeds`` are the seed instructions in file order."""

    def __init__(self, seeds: list[str]):
        super().__init__(seeds)
        self.clean: dict[tuple[int, int], str] = {}  # the instruction a kept candidate must end up as

    def __call__(self, request: dict) -> Reply:
        prompt = last_user(request)
        if GIVEN in prompt:
            parent = given_prompt(prompt)
            with self.lock:
                index, round_no = self.attempt(parent)
                return Reply(content=self.evolve(parent, index, round_no))
        if FIRST in prompt and SECOND in prompt:
            return Reply(content="Not Equal")  # every rewrite here adds a requirement
        with self.lock:
            index, round_no = self.origin(prompt)
        kind = respond_kind(index, round_no) if round_no else "answer"
        if kind == "ask_back":
            return Reply(content=ASK_BACK[pick(index, round_no, len(ASK_BACK))])
        if kind == "foreign":
            return Reply(content=FOREIGN[pick(index, round_no, len(FOREIGN))])
        return Reply(content=ANSWER + (OFFER if kind == "offer" else ""))

    def evolve(self, parent: str, index: int, round_no: int) -> str:
        addition = next(
            a for k in range(len(ADDITIONS)) if (a := ADDITIONS[(index + round_no + k) % len(ADDITIONS)]) not in parent
        )
        core = f"{parent} {addition}"
        kind = evolve_kind(index, round_no)
        if kind == "lookalike":
            template = LOOKALIKES[pick(index, round_no, len(LOOKALIKES))]
            answer = template.format(parent=parent)
            # what is left once a leading label is taken off: the instruction the dataset must hold
            clean = answer.split("\n", 1)[1] if answer.startswith("Rewritten Test:") else answer
            core = clean.removeprefix("**Updated Prompt:** ")
        elif kind == "leak":
            answer = LEAKS[pick(index, round_no, len(LEAKS))][0].format(core=core, parent=parent, addition=addition)
        else:
            answer = core
        self.clean[index, round_no] = core
        self.known[core] = (index, round_no)
        return answer
