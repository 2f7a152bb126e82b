"""A scripted math model for ``--profile math``: it tells WizardMath's two lines apart by the template it is sent.

Its answers depend only on the request (never on call order), as a resumed or re-run run needs: a downward
evolution adds a simplification, an upward one a constraint, some evolutions come back unchanged
(identical_to_parent) or are judged equal (no_information_gain), and every answer is a worked solution.
"""

from __future__ import annotations

import hashlib

from evol.testing.replies import GIVEN, given_prompt
from evol.testing.server import Reply, last_user

#: distinct problems, none a near copy of another (dedup compares across seeds)
PROBLEMS = [
    "A shop sells pens at 3 dollars each. How much do 7 pens cost?",
    "A train travels 120 km in 2 hours. What is its average speed?",
    "Tom has 15 apples and gives away 6. How many are left?",
    "A rectangle is 4 m by 9 m. What is its area?",
    "Solve for x: 5x - 7 = 18.",
    "What is the probability of rolling two sixes with a pair of fair dice?",
    "A recipe needs 250 g of flour for 10 cookies. How much flour is needed for 36 cookies?",
    "Find the sum of the interior angles of a regular hexagon.",
]

ANSWER = (
    "Step 1: write down what the problem gives and what it asks for. Step 2: set up the equation that links "
    "them and simplify it one operation at a time, checking each line. Step 3: solve it and substitute the "
    "result back to confirm it satisfies every condition. The answer is 42."
)


def _h(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


class MathScript:
    """Callable script for ScriptedServer; ``delay`` seconds before every reply (so a run can be killed part-way)."""

    def __init__(self, delay: float = 0.0):
        self.delay = delay

    def __call__(self, request: dict) -> Reply:
        prompt = last_user(request)
        h = _h(prompt)
        if GIVEN in prompt:
            parent = given_prompt(prompt)
            # an evolution of a seed itself is kept, so each line reaches the dataset; a later one fails now and then
            # (the same way each time: the answer depends on the request alone, and a failed parent stays)
            if parent not in PROBLEMS and h % 4 == 0:
                return Reply(content=parent, delay=self.delay)  # identical_to_parent
            if "How (downward)" in prompt:
                return Reply(content=f"{parent} Use only whole numbers below {10 + h % 90}.", delay=self.delay)
            return Reply(
                content=f"{parent} The answer must also hold when every quantity is multiplied by {2 + h % 50}.",
                delay=self.delay,
            )
        if "First instruction:" in prompt and "Second instruction:" in prompt:
            first = prompt.split("First instruction:", 1)[1].split("Second instruction:", 1)[0].strip()
            equal = first not in PROBLEMS and h % 5 == 0  # no_information_gain, never for a seed's own evolution
            return Reply(content="Equal" if equal else "Not Equal", delay=self.delay)
        return Reply(content=ANSWER, delay=self.delay)
