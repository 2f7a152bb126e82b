"""End to end against a model that refuses, chatters and apologises as current chat models do (tests/realistic.py):
``python -m evol run`` over real HTTP, judged from the run's own files."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from evol.models import Record, Rejection
from evol.refusals import refusal
from evol.testing.server import ScriptedServer
from evol.wrappers import unwrap

from .conftest import run_cli
from .realistic import (
    REFUSED,
    REFUSED_SORRY,
    RealisticModel,
    expected_rule,
    respond_kind,
)

ROUNDS = 3
SEEDS = [  # long enough that a shared addition does not make two rewrites near-copies of each other
    "Explain how a rainbow forms after a summer storm, and why its colours always appear in the same order.",
    "Give three practical tips for an adult who wants to learn Portuguese while working full time.",
    "Describe the water cycle as it works over a tropical rainforest, from evaporation to runoff.",
    "Suggest a name for a small bakery in a mountain village that specialises in rye bread and pastries.",
    "Explain what inflation is to a shop owner who has noticed her supplier prices rising every month.",
    "Write a haiku about the first snowfall of winter seen from a city apartment window at night.",
    "List the planets of the solar system in order and give one surprising fact about each of them.",
    "Explain how mRNA vaccines teach the immune system to recognise a virus it has never met.",
    "Describe a good morning routine for a night-shift nurse who sleeps from nine until four.",
    "Explain why the sky is blue at noon but red and orange at sunset, using the idea of scattering.",
    "Give advice to a graduate preparing for a first job interview at a large engineering company.",
    "Summarise the plot of Hamlet in a paragraph that a fifteen-year-old student could follow easily.",
    "Explain what a black hole is and what would happen to a spaceship that flew too close to one.",
    "Describe how bread dough rises, what yeast does to the sugar, and why kneading matters.",
    "Give tips for saving money on groceries for a family of four living in an expensive city.",
    "Explain photosynthesis simply, as if to a child who has just planted sunflower seeds.",
    "Describe the basic rules of chess to someone who has only ever played draughts before.",
    "Explain how a moving bicycle stays upright, and why it falls over when it stops.",
    "Suggest a weekend hobby for a retired teacher who enjoys being outdoors and meeting people.",
    "Explain what a prime number is and show how to check whether 91 is prime by hand.",
    "Describe how honey bees turn flower nectar into honey and store it inside the hive.",
    "Explain what causes ocean tides and why there are two high tides on most days.",
    "Give tips for better sleep to a student who stays up late studying before exams.",
    "Explain how an email travels from the sender's laptop to the recipient's inbox.",
]


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def realistic_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("realistic")
    seeds = tmp / "seeds.txt"
    seeds.write_text("\n".join(SEEDS) + "\n", encoding="utf-8")
    model = RealisticModel(SEEDS)
    with ScriptedServer(model) as srv:
        proc = run_cli("run", "--seeds", str(seeds), "--rounds", str(ROUNDS), "--seed", "3", "--out", str(tmp / "out"),
                       "--base-url", srv.base_url, "--concurrency", "8")
    assert proc.returncode == 0, proc.stderr
    return tmp / "out", model


def expected():
    return {(i, n): expected_rule(i, n) for i in range(len(SEEDS)) for n in range(1, ROUNDS + 1)}


def test_each_new_rule_fires_exactly_where_the_model_misbehaved(realistic_run):
    out, _ = realistic_run
    rejected = read_jsonl(out / "rejected.jsonl")
    got = {(r["seed_index"], r["round"]): r["rule"] for r in rejected}
    assert got == {k: v for k, v in expected().items() if v is not None}
    m = json.loads((out / "manifest.json").read_text())
    by_rule = m["by_rule"]
    assert by_rule == dict(Counter(v for v in expected().values() if v is not None))
    for rule in ("refused_evolution", "wrapped_evolution", "refused_response", "sorry_short_response"):
        assert by_rule[rule] >= 2, by_rule
    assert m["counts"]["balanced"] is True


def test_the_dataset_holds_no_refusal_wrapper_or_refused_answer(realistic_run):
    out, _ = realistic_run
    data = json.loads((out / "dataset.json").read_text(encoding="utf-8"))
    assert len(data) == sum(v is None for v in expected().values())
    for row in data:
        assert refusal(row["instruction"]) is None and refusal(row["output"]) is None
        assert unwrap(row["instruction"]).stripped == () and unwrap(row["instruction"]).problem is None
        low = row["instruction"].lower()
        assert not any(w in low for w in ("here's", "here is", "rewritten", "let me know", "option 2", "explanation:",
                                          "changes made", "this version", "```", "**"))
        assert row["output"] not in REFUSED + REFUSED_SORRY


def test_wrapped_but_clean_rewrites_are_kept_without_the_wrapper_and_say_what_was_stripped(realistic_run):
    out, model = realistic_run
    records = read_jsonl(out / "records.jsonl")
    wrapped = [r for r in records if r["stripped"]]
    assert len(wrapped) >= 5
    assert len({tuple(r["stripped"]) for r in wrapped}) >= 4  # several kinds of wrapper, not one
    for r in records:
        assert r["instruction"] == model.cores[r["seed_index"], r["round"]]
    rejected = read_jsonl(out / "rejected.jsonl")
    bad = [r for r in rejected if r["rule"] == "wrapped_evolution"]
    # what the rule saw is kept for the audit: the rewrite with the chatter it could not take off
    assert bad and all(model.cores[r["seed_index"], r["round"]] in r["instruction"] and r["detail"] for r in bad)


def test_long_helpful_answers_that_say_sorry_are_kept(realistic_run):
    out, _ = realistic_run
    records = read_jsonl(out / "records.jsonl")
    apologetic = [r for r in records if respond_kind(r["seed_index"], r["round"]) == "sorry_long"]
    assert len(apologetic) >= 3
    assert any("Sorry" in r["output"] for r in apologetic) and any("I can't" in r["output"] for r in apologetic)


def test_records_and_rejections_round_trip_through_the_models(realistic_run):
    out, _ = realistic_run
    for name, model in (("records.jsonl", Record), ("rejected.jsonl", Rejection)):
        for row in read_jsonl(out / name):
            assert model.model_validate(row).model_dump(mode="json") == row


def test_math_runs_downward_then_upward_and_asks_for_step_by_step_answers(tmp_path):
    seeds = tmp_path / "math.txt"
    problems = ["A shop sells pens at 3 dollars each. How much do 7 pens cost?",
                "A train travels 120 km in 2 hours. What is its average speed?",
                "Tom has 15 apples and gives away 6. How many are left?",
                "A rectangle is 4 m by 9 m. What is its area?"]
    seeds.write_text("\n".join(problems) + "\n")
    model = RealisticModel(problems)
    with ScriptedServer(model) as srv:
        proc = run_cli("run", "--seeds", str(seeds), "--rounds", "3", "--profile", "math", "--out", str(tmp_path / "o"),
                       "--base-url", srv.base_url, "--disable-rule", "refused_evolution",
                       "--disable-rule", "wrapped_evolution", "--disable-rule", "refused_response",
                       "--disable-rule", "sorry_short_response")
    assert proc.returncode == 0, proc.stderr
    rows = read_jsonl(tmp_path / "o" / "records.jsonl") + read_jsonl(tmp_path / "o" / "rejected.jsonl")
    ops = {(r["round"], r["operation"]) for r in rows}
    assert {op for n, op in ops if n == 1} == {"downward"}
    assert {op for n, op in ops if n > 1} <= {"upward_constraints", "upward_reasoning"}
    assert model.responder_prompts and all("step by step" in p for p in model.responder_prompts)
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert "math/respond" in manifest["prompt_sha256"]
