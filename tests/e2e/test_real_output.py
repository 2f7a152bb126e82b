"""End to end against what real models write around a rewrite (tests/realoutput.py): markers and labels in their own
words, the original and the rewrite in one answer, template echoes, talk about the instruction, answers that ask
back; and the look-alikes that must be kept. One ``python -m evol run --profile code`` over real HTTP."""

from __future__ import annotations

import json
import re

import pytest

from evol.models import Record, Rejection
from evol.testing.server import ScriptedServer

from ..conftest import run_cli
from ..realoutput import (
    ASK_BACK,
    FOREIGN,
    LEAKS,
    LOOKALIKES,
    RealOutputModel,
    evolve_kind,
    expected_rule,
    pick,
    respond_kind,
)

pytestmark = pytest.mark.slow  # one 3-round run (a few seconds)

ROUNDS = 3
SEEDS = [
    "Write a function that returns the largest number in a list of integers.",
    "Write a Python function that checks whether a string is a palindrome, ignoring case.",
    "Implement binary search over a sorted array and return the index of the target.",
    "Write a SQL query that lists the ten customers with the highest total order value.",
    "Write a function that merges two sorted linked lists into one sorted list.",
    "Implement a stack with push, pop and a constant-time minimum operation.",
    "Write a program that counts the words in a text file and prints the five most common.",
    "Write a function that converts a Roman numeral string to an integer.",
    "Implement the Fibonacci sequence with memoization and print the first thirty numbers.",
    "Write a JavaScript function that debounces another function by a given delay in milliseconds.",
    "Write a function that rotates a square matrix by ninety degrees clockwise in place.",
    "Implement a least-recently-used cache with get and put in constant time.",
    "Write a regular expression that validates an IPv4 address and explain each part.",
    "Write a function that finds all anagrams of a word in a dictionary file.",
    "Implement breadth-first search on a graph given as an adjacency list.",
    "Write a bash script that backs up a directory into a dated tar archive.",
    "Write a function that flattens an arbitrarily nested list of lists.",
    "Implement quicksort and explain how you choose the pivot.",
    "Write a function that checks whether parentheses, brackets and braces in a string are balanced.",
    "Write a Python class for a bank account with deposit, withdraw and a transaction history.",
]
MARKER = re.compile(r"^[ \t*_]*#[^\s#][^#\n]*#", re.MULTILINE)
LEFTOVERS = (
    "rewritten test",
    "given test",
    "updated test",
    "erroneous code reference",
    "new question",
    "to make it harder",
    "how to make it harder",
    "the new instruction is",
    "add new constraints and requirements to the original problem",
    "could you please provide",
    "which programming language would you like",
    "i don't see any data",
)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("realoutput")
    seeds = tmp / "seeds.txt"
    seeds.write_text("\n".join(SEEDS) + "\n", encoding="utf-8")
    model = RealOutputModel(SEEDS)
    with ScriptedServer(model) as srv:
        proc = run_cli(
            "run", "--seeds", str(seeds), "--profile", "code", "--rounds", str(ROUNDS), "--seed", "5",
            "--out", str(tmp / "out"), "--base-url", srv.base_url, "--concurrency", "8",
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = tmp / "out"
    records = [Record.model_validate_json(x) for x in (out / "records.jsonl").read_text().splitlines()]
    rejected = [Rejection.model_validate_json(x) for x in (out / "rejected.jsonl").read_text().splitlines()]
    return out, model, records, rejected


def fate(index: int, n: int) -> tuple[str, str]:
    return evolve_kind(index, n), respond_kind(index, n)


def test_each_planted_form_is_eliminated_under_its_rule_and_nothing_else_is(run):
    _, _, records, rejected = run
    got = {r.id: r.rule for r in rejected}
    expected = {
        f"{r.seed_id}.r{r.round}": expected_rule(r.seed_index, r.round) for r in [*records, *rejected] if r.round
    }
    assert {k: v for k, v in expected.items() if v} == got
    assert {"prompt_leak", "meta_commentary", "clarification_response", "language_changed_response"} <= set(
        got.values()
    )
    # every form the model writes occurred, so the equality above covers each of them
    tried = [(x.seed_index, x.round) for x in [*records, *rejected] if x.round]
    assert {pick(i, n, len(LEAKS)) for i, n in tried if evolve_kind(i, n) == "leak"} == set(range(len(LEAKS)))
    assert {pick(i, n, len(LOOKALIKES)) for i, n in tried if evolve_kind(i, n) == "lookalike"} == set(
        range(len(LOOKALIKES))
    )
    asked = {pick(i, n, len(ASK_BACK)) for i, n in tried if expected_rule(i, n) == "clarification_response"}
    assert asked == set(range(len(ASK_BACK)))
    foreign = {pick(i, n, len(FOREIGN)) for i, n in tried if expected_rule(i, n) == "language_changed_response"}
    assert foreign == set(range(len(FOREIGN)))


def test_no_leftover_of_the_prompt_and_no_question_back_reaches_the_dataset(run):
    out, _, _, _ = run
    rows = json.loads((out / "dataset.json").read_text())
    assert rows
    for row in rows:
        low = (row["instruction"] + "\n" + row["output"]).casefold()
        assert not [x for x in LEFTOVERS if x in low], row
        assert not MARKER.search(row["instruction"]), row


def test_genuine_rewrites_and_their_look_alikes_are_kept_whole(run):
    """Markdown headings, preprocessor lines, "the given array", a label taken off, an answer that offers more."""
    _, model, records, rejected = run
    genuine = [x for x in [*records, *rejected] if x.round and expected_rule(x.seed_index, x.round) is None]
    kept = [r for r in records if r.round and expected_rule(r.seed_index, r.round) is None]
    assert {fate(r.seed_index, r.round)[0] for r in kept} == {"genuine", "lookalike"}
    assert len(kept) >= 0.95 * len(genuine) and len(kept) == len(genuine)
    for r in kept:
        assert r.instruction == model.clean[r.seed_index, r.round]
    labelled = [r for r in kept if r.stripped]
    assert labelled and all(s in ("Rewritten Test:", "**Updated Prompt:**") for r in labelled for s in r.stripped)
    assert any("## Approach" in r.instruction for r in kept) and any("#include" in r.instruction for r in kept)
