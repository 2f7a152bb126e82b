"""A synthetic instruction corpus for the benchmarks: distinct templated instructions and controlled variants.

Distinct instructions are a main clause and two detail sentences drawn from combinatorial templates (bench.words),
so two draws share little beyond their skeleton; variants apply 1-4 word-level edits (swaps, insertions,
deletions, punctuation, case, reordering, synonyms), some to earlier variants.
"""

from __future__ import annotations

import random
from pathlib import Path

from bench.words import (
    ADJ,
    ASPECTS,
    AUDIENCE,
    CODE_CONSTRAINTS,
    CODE_TASKS,
    CONCEPTS,
    CONSTRAINT,
    CONTEXTS,
    DEVICES,
    DURATIONS,
    ENDINGS,
    EVENTS,
    FIELDS,
    FOLLOWUPS,
    FORMATS,
    FORMS,
    GOALS,
    LANGS,
    LENGTHS,
    NOUN,
    PLACES,
    READERS,
    TONES,
    VERBS,
)
from evol.seeds import read_rows

SEEDS = Path(__file__).resolve().parent.parent / "datasets" / "seeds" / "self_instruct_seed_tasks.jsonl"

MAIN = [
    lambda r: (
        f"{r.choice(VERBS)} a {r.choice(FORMS)} about the {r.choice(ADJ)} {r.choice(NOUN)} for {r.choice(AUDIENCE)}, {r.choice(CONSTRAINT)}."
    ),
    lambda r: (
        f"Explain {r.choice(CONCEPTS)} to {r.choice(AUDIENCE)} using {r.choice(DEVICES)}, and {r.choice(FOLLOWUPS)}."
    ),
    lambda r: (
        f"Write a {r.choice(LANGS)} function that {r.choice(CODE_TASKS).format(noun=r.choice(NOUN))} {r.choice(CODE_CONSTRAINTS)}."
    ),
    lambda r: (
        f"Plan a {r.choice(DURATIONS)} {r.choice(EVENTS)} in {r.choice(PLACES)} for {r.choice(AUDIENCE)}, {r.choice(CONSTRAINT)}."
    ),
    lambda r: (
        f"Compare the {r.choice(ADJ)} {r.choice(NOUN)} and the {r.choice(ADJ)} {r.choice(NOUN)} in terms of {r.choice(ASPECTS)}; {r.choice(FORMATS)}."
    ),
    lambda r: (
        f"What are {r.randint(3, 12)} practical ways to {r.choice(GOALS)} {r.choice(CONTEXTS)}? {r.choice(FORMATS).capitalize()}."
    ),
    lambda r: (
        f"Imagine you run a {r.choice(ADJ)} {r.choice(NOUN)} in {r.choice(PLACES)}. {r.choice(VERBS)} a {r.choice(FORMS)} for {r.choice(AUDIENCE)} {r.choice(CONSTRAINT)}."
    ),
    lambda r: (
        f"Summarize the history of {r.choice(CONCEPTS)} for {r.choice(AUDIENCE)} {r.choice(CONSTRAINT)}, then {r.choice(FOLLOWUPS)}."
    ),
]
DETAILS = [
    lambda r: f"Mention the {r.choice(ADJ)} {r.choice(NOUN)} at least once.",
    lambda r: f"Keep the tone {r.choice(TONES)} and the length {r.choice(LENGTHS)}.",
    lambda r: f"Include {r.randint(2, 9)} examples drawn from {r.choice(FIELDS)}.",
    lambda r: f"Assume the reader {r.choice(READERS)}.",
    lambda r: f"Finish with {r.choice(ENDINGS)} about {r.choice(FIELDS)}.",
    lambda r: f"Refer to {r.choice(FIELDS)} and {r.choice(FIELDS)} where it helps.",
    lambda r: f"Avoid {r.choice(ENDINGS)[2:]}s and anything about the {r.choice(NOUN)}.",
    lambda r: f"Write it for someone who {r.choice(READERS)} and likes {r.choice(FIELDS)}.",
    lambda r: f"Use a {r.choice(TONES)} voice, as if talking to {r.choice(AUDIENCE)} in {r.choice(PLACES)}.",
]

FILLERS = [
    "please",
    "briefly",
    "also",
    "really",
    "carefully",
    "now",
    "just",
    "clearly",
    "quickly",
    "kindly",
    "simply",
    "then",
]
SYNONYMS = {
    "write": "compose",
    "compose": "write",
    "explain": "describe",
    "describe": "explain",
    "short": "brief",
    "list": "enumerate",
    "give": "provide",
    "create": "make",
    "generate": "produce",
    "find": "identify",
    "simple": "easy",
    "using": "with",
    "about": "on",
    "following": "given",
    "help": "assist",
    "plan": "organize",
    "ways": "methods",
    "suggest": "propose",
    "small": "little",
    "big": "large",
}
PUNCT = [",", ".", "!", "?", ";", ":"]


def distinct(rng: random.Random, n: int) -> list[str]:
    """``n`` different instructions: a main clause and two different detail sentences each."""
    out: set[str] = set()
    while len(out) < n:
        first, second = rng.sample(DETAILS, 2)
        out.add(" ".join((rng.choice(MAIN)(rng), first(rng), second(rng))))
    return sorted(out)  # sorted: set order changes with the process's string hashing


def edit(rng: random.Random, text: str) -> str:
    """One controlled edit at the word level."""
    words = text.split(" ")
    kind = rng.choice(("swap", "insert", "delete", "punct", "case", "reorder", "synonym"))
    i = rng.randrange(len(words))
    if kind == "swap" and len(words) > 2:
        j = min(i + 1, len(words) - 1)
        words[i], words[j] = words[j], words[i]
    elif kind == "insert":
        words.insert(i, rng.choice(FILLERS))
    elif kind == "delete" and len(words) > 4:
        del words[i]
    elif kind == "punct":
        words[i] = words[i].rstrip("".join(PUNCT)) + rng.choice([*PUNCT, ""])
    elif kind == "case":
        words[i] = words[i].upper() if rng.random() < 0.3 else words[i].swapcase()
    elif kind == "reorder" and len(words) > 4:
        word = words.pop(i)
        words.insert(max(0, min(len(words), i + rng.choice((-3, -2, 2, 3)))), word)
    elif kind == "synonym":
        words[i] = SYNONYMS.get(words[i].lower(), rng.choice(FILLERS))
    return " ".join(words)


def corpus(n: int, seed: int = 0, variant_share: float = 0.3) -> list[str]:
    """``n`` instructions: seeds and distinct ones, then variants (of those, or of earlier variants), shuffled."""
    rng = random.Random(seed)
    seeds = [row.instruction for row in read_rows(SEEDS)]
    bases = (seeds + distinct(rng, max(0, n - int(n * variant_share) - len(seeds))))[:n]
    items = list(bases)
    while len(items) < n:
        text = rng.choice(bases if rng.random() < 0.7 else items)
        for _ in range(rng.choice((1, 1, 2, 2, 3, 4))):
            text = edit(rng, text)
        items.append(text)
    rng.shuffle(items)
    return items
