"""End to end against a model that refuses, chatters, rewords and apologises as current chat models do, and judges
in many forms (tests/realistic.py): one 3-round ``python -m evol run`` over real HTTP, judged from its own files."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest
from rapidfuzz import fuzz

from evol.models import Record, Rejection
from evol.prompts import load_profile
from evol.report.build import build_report
from evol.rules.refusals import refusal
from evol.rules.wrappers import unwrap
from evol.testing.server import ScriptedServer
from evol.text import normalize

from ..conftest import run_cli
from ..mathscript import PROBLEMS, MathScript
from ..realistic import (
    ADDITIONS,
    REFUSALS,
    REFUSED,
    REFUSED_SORRY,
    RealisticModel,
    evolve_kind,
    expected_rule,
    judge_form,
    long_seeds,
    respond_kind,
)

pytestmark = pytest.mark.slow  # every test reads a scripted run of the realistic model (4-70 s)

ROUNDS = 3
LONG = 450  # characters: a parent this long stays within ratio 0.9 of a rewrite that adds 10-20 words to it
SHORT = [  # long enough that a shared addition does not make two rewrites near-copies of each other
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
SEEDS = SHORT + long_seeds([460] * 12 + [1000] * 6, tag="part")
IN_DEPTH = {op.name for op in load_profile("general").operations if op.kind == "in-depth"}


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def realistic_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("realistic")
    seeds = tmp / "seeds.txt"
    seeds.write_text("\n".join(SEEDS) + "\n", encoding="utf-8")
    model = RealisticModel(SEEDS)
    with ScriptedServer(model) as srv:
        proc = run_cli(
            "run",
            "--seeds",
            str(seeds),
            "--rounds",
            str(ROUNDS),
            "--seed",
            "3",
            "--out",
            str(tmp / "out"),
            "--base-url",
            srv.base_url,
            "--concurrency",
            "8",
            # the figures (the README's table) are of evolutions and their answers; the seeds' own rows, in the
            # dataset by default, are left out so every dataset row is an attempt the expectations name
            "--no-seeds",
        )
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
        seed = next((s for s in SEEDS if row["instruction"].startswith(s)), "").lower()  # a seed may say "here is"
        assert not any(
            w in low and w not in seed
            for w in (
                "here's",
                "here is",
                "rewritten",
                "let me know",
                "option 2",
                "explanation:",
                "changes made",
                "this version",
                "```",
                "**",
            )
        )
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


def test_math_asks_for_step_by_step_answers(tmp_path):
    """The math profile end to end: its answers are asked for as worked solutions (its two lines:
    tests/e2e/test_math_lines.py)."""
    seeds = tmp_path / "math.txt"
    seeds.write_text("\n".join(PROBLEMS[:4]) + "\n")
    model = Recording(MathScript())
    with ScriptedServer(model) as srv:
        proc = run_cli(
            "run",
            "--seeds",
            str(seeds),
            "--rounds",
            "2",
            "--profile",
            "math",
            "--out",
            str(tmp_path / "o"),
            "--base-url",
            srv.base_url,
        )
    assert proc.returncode == 0, proc.stderr
    responder = [p for p in model.prompts if "#Given Prompt#" not in p and "First instruction:" not in p]
    assert responder and all("step by step" in p for p in responder)
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert "math/respond" in manifest["prompt_sha256"]


class Recording:
    """A script that also keeps every prompt it was sent."""

    def __init__(self, script):
        self.script, self.prompts = script, []

    def __call__(self, request):
        from evol.testing.server import last_user

        self.prompts.append(last_user(request))
        return self.script(request)


# --- the promises, each from the run's files ---------------------------------------------------


def outcomes(out) -> tuple[list[Record], list[Rejection]]:
    def lines(name):
        return (out / name).read_text(encoding="utf-8").splitlines()

    return (
        [Record.model_validate_json(x) for x in lines("records.jsonl") if x.strip()],
        [Rejection.model_validate_json(x) for x in lines("rejected.jsonl") if x.strip()],
    )


def parent_texts(records: list[Record], rejected: list[Rejection]) -> dict[str, str]:
    """Every instruction an evolution can have grown from, by id: the seeds and the kept evolutions."""
    return {x.seed_id: SEEDS[x.seed_index] for x in [*records, *rejected]} | {r.id: r.instruction for r in records}


def test_every_genuine_in_depth_evolution_of_a_long_parent_is_kept(realistic_run):
    out, model = realistic_run
    records, rejected = outcomes(out)
    parents = parent_texts(records, rejected)
    everything = [*records, *rejected]
    genuine = [
        x
        for x in everything
        if x.operation in IN_DEPTH
        and len(parents[x.parent_id]) >= LONG
        and evolve_kind(x.seed_index, x.round) in ("clean", "wrap")
    ]
    for x in genuine:  # the scenario is the one the issue describes: a long parent plus 10-20 new words
        added = model.cores[x.seed_index, x.round][len(parents[x.parent_id]) :]
        assert added.strip() in ADDITIONS and 10 <= len(added.split()) <= 20
    kept = {r.id for r in records}
    lost = [(x.id, x.rule) for x in genuine if x.id not in kept and x.rule in ("near_duplicate", "no_information_gain")]
    assert lost == []
    # the rest of the genuine ones met a rule the script planned (a refused answer, an unreadable verdict)
    assert all((x.id in kept) == (expected_rule(x.seed_index, x.round) is None) for x in genuine)
    kept_genuine = [x for x in genuine if x.id in kept]
    assert len(kept_genuine) >= 8
    assert {len(parents[x.parent_id]) >= 1000 for x in kept_genuine} == {True, False}  # both long buckets
    # most stay within ratio 0.9 of their parent: what dedup across a lineage used to throw away
    close = [x for x in kept_genuine if fuzz.ratio(normalize(x.instruction), normalize(parents[x.parent_id])) >= 90]
    assert len(close) >= len(kept_genuine) // 2


def test_every_no_gain_rewording_is_eliminated_and_every_verdict_is_recorded(realistic_run):
    out, model = realistic_run
    records, rejected = outcomes(out)
    everything = [*records, *rejected]
    rewordings = [x for x in everything if evolve_kind(x.seed_index, x.round) == "reword"]
    assert len(rewordings) >= 5
    for x in rewordings:
        unclear = judge_form(x.seed_index, x.round) == "unclear"
        assert isinstance(x, Rejection) and x.rule == ("judge_unclear" if unclear else "no_information_gain"), x.id
    judged = [x for x in everything if x.round > 0 and (isinstance(x, Record) or x.stage != "evolve")]
    assert len(judged) == sum(len(a) > 0 for a in model.judged.values())
    forms = Counter()
    for x in judged:
        form = judge_form(x.seed_index, x.round)
        forms[form] += 1
        v = x.judge
        assert v is not None, x.id
        # the raw text as the model sent it, how it ended, and what it was read as; the retries with both answers
        assert [a.text for a in v.answers] == model.judged[x.seed_index, x.round]
        assert len(v.answers) == (2 if form in ("cut", "unclear") else 1)
        assert v.judgement == v.answers[-1].judgement
        assert v.judgement == (
            "unclear"
            if form == "unclear"
            else "equal"
            if evolve_kind(x.seed_index, x.round) == "reword"
            else "not_equal"
        )
        if form == "cut":
            assert (v.answers[0].finish_reason, v.answers[0].judgement) == ("length", "unclear")
    assert set(forms) == {"plain", "bold", "explained", "think", "cut", "aloud", "unclear"}
    manifest = json.loads((out / "manifest.json").read_text())
    unclear = [x for x in rejected if x.rule == "judge_unclear"]
    assert len(unclear) >= 2
    assert manifest["by_rule"]["judge_unclear"] == len(unclear)
    assert manifest["counts"]["judge_unclear"] == forms["cut"] + forms["unclear"]  # every first answer with no verdict
    assert manifest["judge"] == {
        "judged": len(judged),
        "unclear": forms["cut"] + forms["unclear"],
        "resolved_by_retry": forms["cut"],
        "unclear_after_retry": forms["unclear"],
    }


def test_no_refused_or_wrapped_rewrite_and_no_refused_answer_reaches_the_dataset(realistic_run):
    out, _ = realistic_run
    records, rejected = outcomes(out)
    rows = json.loads((out / "dataset.json").read_text(encoding="utf-8"))
    assert [(r["instruction"], r["output"]) for r in rows] == [(r.instruction, r.output) for r in records]
    for row in rows:
        assert not any(t in row["instruction"] or t in row["output"] for t in REFUSALS + REFUSED + REFUSED_SORRY)
    caught = Counter(x.rule for x in rejected)
    assert all(
        caught[rule] >= 2
        for rule in (
            "refused_evolution",
            "wrapped_evolution",
            "refused_response",
            "sorry_short_response",
            "no_information_gain",
            "judge_unclear",
        )
    )


def test_the_report_shows_kept_share_by_parent_length_and_each_rules_catches(realistic_run):
    out, _ = realistic_run
    records, rejected = outcomes(out)
    parents, kept = parent_texts(records, rejected), {r.id for r in records}
    want: dict[int, Counter] = {}
    for x in [*records, *rejected]:
        if x.round and x.operation in IN_DEPTH:
            n = len(parents[x.parent_id])
            label = 0 if n < 450 else 450 if n < 1000 else 1000  # the band's shortest parent, as the page keys it
            want.setdefault(label, Counter()).update(candidates=1, kept=x.id in kept)
    page = build_report(out).read_text(encoding="utf-8")

    def cell(key):
        return re.search(rf'data-metric="{re.escape(key)}">(\d+)<', page)

    assert len(want) == 3 and all(c["kept"] for c in want.values())
    for label, c in want.items():
        for k in ("candidates", "kept"):
            assert int(cell(f"depth.{label}.{k}").group(1)) == c[k], (label, k)
    for rule, n in json.loads((out / "manifest.json").read_text())["by_rule"].items():
        assert int(cell(f"by_rule.{rule}").group(1)) == n
