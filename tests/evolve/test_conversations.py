"""Conversations (issue #29): seeds read whole, a turn evolved in the context of the turns before it, follow-up turns
added up to ``--turns``, each answered with its history; the rules per turn; exports with every turn. Real
``python -m evol run`` subprocesses against the scripted server (tests/conversations.py's model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evol.rundir.files import read_jsonl
from evol.seeds import load_seeds
from evol.testing.answer_script import AnswerScript
from evol.testing.replies import GIVEN, Reply, last_user
from evol.testing.server import ScriptedServer

from ..conftest import run_cli
from ..conversations import (
    EQUALITY_ASK,
    FOLLOW_UP_ASK,
    NEXT,
    SEEDS,
    UNRELATED,
    ConversationModel,
    first_user,
    seed_turns,
    write_seeds,
)


def run(srv, seeds: Path, out: Path, *extra: str, engine: str = "local"):
    proc = run_cli(
        "run",
        "--seeds",
        str(seeds),
        "--rounds",
        "3",
        "--turns",
        "4",
        "--operation-weight",
        "follow_up=6",
        "--base-url",
        srv.base_url,
        "--out",
        str(out),
        *extra,
        engine=engine,
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def assert_follow_ups_extend_their_parents(records: list[dict], grown: list[dict]) -> None:
    """A follow-up's history ends with its parent's turn and the answer to it."""
    by_id = {r["id"]: r for r in records}
    for rec in grown:
        parent = by_id.get(rec["parent_id"])
        if parent is not None:
            assert rec["history"][-2:] == [
                {"role": "user", "content": parent["instruction"]},
                {"role": "assistant", "content": parent["output"]},
            ]


def turns_of(record: dict) -> list[dict]:
    return [*record.get("history", []), {"role": "user", "content": record["instruction"]}]


def test_conversation_seeds_are_read_whole(tmp_path):
    seeds = load_seeds(write_seeds(tmp_path / "c.jsonl")).seeds
    assert [len(s.history) for s in seeds] == [0, 3, 4, 0, 0]
    s = seeds[1]
    assert [t.role for t in s.history] == ["system", "user", "assistant"]
    assert s.instruction == "Show it on f(x) = x squared at x = 3." and s.output is None
    assert seeds[2].history[-1].content.startswith("Wild Yeast Co.")
    # a one-turn conversation is a single instruction, with the id it always had
    one = load_seeds(tmp_path / "c.jsonl", limit=1).seeds[0]
    assert one.history == () and one.instruction == first_user(SEEDS[0])


@pytest.mark.slow
def test_conversations_grow_by_follow_ups_each_turn_answered_with_its_history(tmp_path):
    seeds = write_seeds(tmp_path / "c.jsonl")
    model = ConversationModel()
    with ScriptedServer(model) as srv:
        run(srv, seeds, tmp_path / "o")
    out = tmp_path / "o"
    records = [r for r in read_jsonl(out / "records.jsonl") if r["round"] > 0]  # round 0: the seeds themselves
    rejected = read_jsonl(out / "rejected.jsonl")
    assert records

    # earlier turns are exactly the seed's; conversations grow to at most four user turns
    for rec in records:
        seed = seed_turns(SEEDS[rec["seed_index"]])
        turns = turns_of(rec)
        assert sum(t["role"] == "user" for t in turns) <= 4
        seed_before = [t for t in seed[:-1]] if seed[-1]["role"] == "user" else seed[:-2]
        assert turns[: len(seed_before)] == seed_before, rec["id"]
        assert rec["operation"] in {
            "follow_up",
            "add_constraints",
            "deepening",
            "concretizing",
            "increase_reasoning",
            "complicate_input",
            "mutation",
        }
    grown = [r for r in records if r["operation"] == "follow_up"]
    assert grown and max(sum(t["role"] == "user" for t in turns_of(r)) for r in records) == 4
    assert_follow_ups_extend_their_parents(records, grown)

    # every answering request carried the whole history; every evolving and judging prompt showed it
    for rec in records:
        answered = [m for m in model.of_stage("respond") if m[-1]["content"] == rec["instruction"]]
        assert answered and all(m[:-1] == rec.get("history", []) for m in answered), rec["id"]
    for stage in ("evolve", "follow_up", "judge", "follow_up_judge"):
        prompts = [m[-1]["content"] for m in model.of_stage(stage)]
        with_history = [p for p in prompts if "Below is a conversation between a user and an AI assistant" in p]
        assert with_history, stage
    shown = [m[-1]["content"] for m in model.of_stage("evolve") if "sourdough bread" in m[-1]["content"]]
    assert shown and all("[Assistant]: Wild Yeast Co." in p for p in shown)  # seed 2's earlier turns

    # planted failures, named: a follow-up that ignores the answer, one that repeats the turn before it
    rules = {(r["seed_index"], r["rule"]) for r in rejected}
    assert (3, "ignored_answer") in rules and (4, "repeated_turn") in rules
    assert all(r["instruction"] != UNRELATED for r in records)

    # dataset.json: alpaca rows with the conversation's system message and earlier pairs
    dataset = json.loads((out / "dataset.json").read_text())
    long = next(d for d in dataset if d.get("system"))
    assert long["system"] == "You are a patient tutor for first-year students." and long["history"][0][0].startswith(
        "What does the derivative"
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["by_rule"].get("near_duplicate", 0) == 0


@pytest.mark.slow
def test_conversation_exports_carry_every_turn_and_load_in_datasets(tmp_path):
    import datasets

    seeds = write_seeds(tmp_path / "c.jsonl")
    with ScriptedServer(ConversationModel()) as srv:
        run(srv, seeds, tmp_path / "o")
    records = read_jsonl(tmp_path / "o" / "records.jsonl")
    longest = max(records, key=lambda r: len(r.get("history", [])))
    want = len(longest.get("history", [])) + 2
    for fmt, data_files, field in (
        ("sharegpt", "train.json", "conversations"),
        ("openai-chat", "train.jsonl", "messages"),
        ("vicuna", "train.jsonl", "text"),
        ("alpaca", "train.json", "history"),
    ):
        out = tmp_path / f"x-{fmt}"
        proc = run_cli("export", str(tmp_path / "o"), "--format", fmt, "--out", str(out))
        assert proc.returncode == 0, proc.stderr
        ds = datasets.load_dataset("json", data_files=str(out / data_files), split="train")
        assert len(ds) == len(records)
        row = next(r for r in ds if (r.get("id") in (None, longest["id"])) and longest["instruction"] in json.dumps(r))
        if fmt in ("sharegpt", "openai-chat"):
            assert len(row[field]) == want
        elif fmt == "vicuna":
            text = row["text"]
            assert text.count(" USER: ") == sum(t["role"] == "user" for t in longest.get("history", [])) + 1
            assert text.endswith(longest["output"] + "</s>") and text.count("</s>") == text.count(" USER: ")
        else:
            assert len(row["history"]) == sum(t["role"] == "assistant" for t in longest.get("history", []))
    card = (tmp_path / "x-alpaca" / "README.md").read_text()
    assert "| user turns per conversation | rows |" in card and "| 4 |" in card
    proc = run_cli("report", str(tmp_path / "o"))
    assert proc.returncode == 0, proc.stderr
    html = (tmp_path / "o" / "report" / "report.html").read_text()
    assert "Turns per conversation" in html


@pytest.mark.slow
def test_a_plain_run_is_unchanged_by_turns_being_available(tmp_path):
    """--turns 1 (the default) never draws the follow-up operation and writes no history field."""
    seeds = write_seeds(tmp_path / "c.jsonl")
    with ScriptedServer(ConversationModel()) as srv:
        proc = run_cli(
            "run", "--seeds", str(seeds), "--rounds", "2", "--base-url", srv.base_url, "--out", str(tmp_path / "o")
        )
    assert proc.returncode == 0, proc.stderr
    records = read_jsonl(tmp_path / "o" / "records.jsonl")
    assert records and all(r["operation"] != "follow_up" for r in records)
    assert all("history" not in r for r in records if r["seed_index"] in (0, 3, 4))


@pytest.mark.slow
def test_the_prefect_engine_makes_the_same_conversations(tmp_path):
    seeds = write_seeds(tmp_path / "c.jsonl")
    with ScriptedServer(ConversationModel()) as srv:
        run(srv, seeds, tmp_path / "local")
        run(srv, seeds, tmp_path / "prefect", engine="prefect")
    for name in ("dataset.json", "records.jsonl", "rejected.jsonl"):
        assert (tmp_path / "prefect" / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name


class RankedConversations(ConversationModel):
    """ConversationModel whose answers carry planted quality and whose ranking judge scores them (AnswerScript's)."""

    def __init__(self) -> None:
        super().__init__()
        self.answers = AnswerScript()

    def __call__(self, request: dict) -> Reply:
        prompt = last_user(request)
        ours = any(mark in prompt for mark in (NEXT, GIVEN, FOLLOW_UP_ASK, EQUALITY_ASK))
        if not ours:  # an answer or the ranking of one
            super().__call__(request)  # kept among the requests, as the respond stage
            return self.answers(request)
        return super().__call__(request)


@pytest.mark.slow
def test_conversation_preference_pairs_carry_every_turn_before_the_answers(tmp_path):
    """preference-chat's prompt is the conversation the candidates were answered after; dpo's string prompt
    cannot hold it, so dpo leaves conversations out and says why."""
    seeds = write_seeds(tmp_path / "c.jsonl")
    with ScriptedServer(RankedConversations()) as srv:
        run(srv, seeds, tmp_path / "o", "--answers", "2")
    records = read_jsonl(tmp_path / "o" / "records.jsonl")
    expected = {
        r["instruction"]: [*r.get("history", []), {"role": "user", "content": r["instruction"]}] for r in records
    }
    talks = [r for r in records if any(t["role"] == "user" for t in r.get("history", []))]
    assert talks and len(talks) < len(records)

    chat = tmp_path / "chat"
    proc = run_cli("export", str(tmp_path / "o"), "--format", "preference-chat", "--out", str(chat))
    assert proc.returncode == 0, proc.stderr
    rows = read_jsonl(chat / "train.jsonl")
    assert rows and all(row["prompt"] == expected[row["prompt"][-1]["content"]] for row in rows)
    assert max(len(row["prompt"]) for row in rows) >= 5  # a seed's system message and two earlier turns, at least
    assert all([m["role"] for m in row["chosen"]] == ["assistant"] for row in rows)

    dpo = tmp_path / "dpo"
    proc = run_cli("export", str(tmp_path / "o"), "--format", "dpo", "--out", str(dpo))
    assert proc.returncode == 0, proc.stderr
    strings = read_jsonl(dpo / "train.jsonl")
    single = {r["instruction"] for r in records if r not in talks}
    assert strings and {row["prompt"] for row in strings} <= single
    left_out = json.loads((dpo / "export.json").read_text())["left_out"]
    conversations = next(n for why, n in left_out.items() if why.startswith("a conversation"))
    assert conversations == len(rows) - len(strings)  # the same pairs, less the conversations'


@pytest.mark.slow
@pytest.mark.parametrize("profile, who", [("code", "a programmer"), ("math", "a student")])
def test_code_and_math_conversations_grow_by_their_own_follow_ups(tmp_path, profile, who):
    """Each profile writes its own next message (a programmer's, a student's); math's follow-ups grow a line."""
    seeds = write_seeds(tmp_path / "c.jsonl")
    model = ConversationModel()
    with ScriptedServer(model) as srv:
        run(srv, seeds, tmp_path / "o", "--profile", profile)
    records = [r for r in read_jsonl(tmp_path / "o" / "records.jsonl") if r["round"] > 0]
    grown = [r for r in records if r["operation"] == "follow_up"]
    assert grown and max(sum(t["role"] == "user" for t in turns_of(r)) for r in records) == 4
    assert_follow_ups_extend_their_parents(records, grown)
    asked = [m[-1]["content"] for m in model.of_stage("follow_up")]
    assert asked and all(f"act as {who}" in p for p in asked)
    if profile == "math":  # (this script's rewrites are the same on both lines, so the upward ones are duplicates)
        assert {r["line"] for r in grown} <= {"downward", "upward"} and all(r["line"] for r in grown)


def test_a_line_of_follow_ups_alone_is_left_out():
    """--operation-weight downward=0 turns math's downward line off, though follow_up belongs to it too."""
    from evol.prompts import load_profile

    assert load_profile("math", weights={"downward": 0.0}).line_names == ("upward",)
