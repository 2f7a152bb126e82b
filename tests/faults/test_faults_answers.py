"""Answers that arrive but are no good (refusals, echoes, wrong language, over-long evolutions): each is
eliminated under a named rule, never retried; the rest of the run completes (faultmodel.py's scripted model)."""

from __future__ import annotations

import pytest

from evol.rundir.files import read_jsonl
from evol.testing.replies import given_prompt
from evol.testing.server import Reply, ScriptedServer
from evol.testing.words import filler

from ..faultmodel import (
    Model,
    assert_accounted,
    ledger,
    run_inproc,
    topics,
)

# --- answers that arrive but are no good: eliminated under a named rule, not retried (a cut one once) ----------------------

BAD_ANSWERS = [
    ("evolve", Reply(content=""), "empty_evolution"),
    ("evolve", Reply(content=None), "empty_evolution"),
    ("evolve", Reply(content=" \n\t "), "empty_evolution"),
    (
        "evolve",
        Reply(content="Describe topic-01 in plain words and also", finish_reason="length"),
        "truncated_evolution",
    ),
    ("evolve", Reply(content="Describe topic-01 in", finish_reason="content_filter"), "content_filtered"),
    ("evolve", Reply(content=None, finish_reason="content_filter"), "content_filtered"),
    ("respond", Reply(content=""), "empty_response"),
    ("respond", Reply(content="   \n  "), "empty_response"),
    ("respond", Reply(content="Topic-01 is, in plain words, a", finish_reason="length"), "truncated_response"),
    ("respond", Reply(content=None, finish_reason="content_filter"), "content_filtered"),
    ("respond", Reply(content="Sorry, I can't help with that."), "sorry_short_response"),
    ("respond", Reply(content="It is what it is."), "stopwords_only_response"),
    ("judge", Reply(content="Equal"), "no_information_gain"),
]


@pytest.mark.parametrize("stage, reply, rule", BAD_ANSWERS, ids=[f"{s}-{r}" for s, _, r in BAD_ANSWERS])
@pytest.mark.slow
def test_a_bad_answer_eliminates_its_item_under_a_named_rule(tmp_path, stage, reply, rule):
    model = Model()
    model.fail(stage, reply, topic="topic-01")
    with ScriptedServer(model) as srv:
        m = run_inproc(srv.base_url, topics(3), tmp_path / "o")
    assert m["status"] == "complete"
    rows = assert_accounted(tmp_path / "o", 3)
    assert rows[(1, 1)][:2] == ("eliminated", rule)
    assert rows[(0, 1)][0] == rows[(2, 1)][0] == "kept"
    assert m["by_rule"] == {rule: 1}
    # an answer is not retried, but for one cut at max_tokens, asked once more with twice the room (#27)
    assert sum(1 for p in model.prompts(stage) if "topic-01" in p) == (2 if rule == "truncated_response" else 1)
    if stage == "evolve":  # an eliminated evolution is never answered
        assert not any("topic-01" in p for p in model.prompts("respond"))


@pytest.mark.parametrize("rule", ["content_filtered", "echoed_response", "script_changed", "language_changed"])
@pytest.mark.slow
def test_the_new_rules_can_be_switched_off(tmp_path, rule):
    reply = {
        "content_filtered": (
            "respond",
            Reply(content="A fine answer about topic-01 and more.", finish_reason="content_filter"),
        ),
        "echoed_response": ("respond", lambda p: Reply(content=p)),
        "script_changed": ("evolve", Reply(content=CHINESE_EVOLUTION)),
        "language_changed": ("evolve", Reply(content=FRENCH_EVOLUTION)),
    }[rule]
    model = Model()
    model.fail(reply[0], reply[1], topic="topic-01")
    with ScriptedServer(model) as srv:
        run_inproc(srv.base_url, topics(2), tmp_path / "on")
        run_inproc(srv.base_url, topics(2), tmp_path / "off", disable_rules=[rule])
    assert ledger(tmp_path / "on")[(1, 1)][:2] == ("eliminated", rule)
    assert ledger(tmp_path / "off")[(1, 1)][0] == "kept"


@pytest.mark.slow
def test_an_evolution_over_the_length_budget_is_eliminated_and_never_answered(tmp_path):
    model = Model()
    model.fail("evolve", Reply(content="Describe topic-01 " + filler("long", 3000)), topic="topic-01")
    with ScriptedServer(model) as srv:
        run_inproc(srv.base_url, topics(2), tmp_path / "o", max_instruction_chars=1000)
        assert not any("topic-01" in p for p in model.prompts("respond") + model.prompts("judge"))
        run_inproc(srv.base_url, topics(2), tmp_path / "off", max_instruction_chars=1000, disable_rules=["too_long"])
    assert ledger(tmp_path / "o")[(1, 1)][:2] == ("eliminated", "too_long")
    assert ledger(tmp_path / "off")[(1, 1)][0] == "kept"  # like every rule, it can be switched off


# --- echoes and the wrong language ---------------------------------------------------------------------------

CHINESE_EVOLUTION = "请用通俗的语言详细描述这个主题，并给出三个具体的例子，说明它在日常生活中的作用和意义。"
# the same letters as the English seed: script_changed cannot see it
FRENCH_EVOLUTION = (
    "Décris le sujet topic-01 avec des mots simples pour un lecteur curieux, puis donne trois exemples concrets "
    "de son rôle dans la vie de tous les jours."
)


def test_an_evolving_model_that_echoes_its_prompt_is_caught_by_the_leak_rule(tmp_path):
    model = Model()
    model.fail("evolve", lambda prompt: Reply(content=prompt), topic="topic-01")  # the whole evolving prompt back
    model.fail("evolve", lambda prompt: Reply(content=given_prompt(prompt)), topic="topic-02")  # its parent back
    model.fail(
        "evolve", lambda prompt: Reply(content="#Rewritten Prompt#:\n" + given_prompt(prompt).upper()), topic="topic-03"
    )
    with ScriptedServer(model) as srv:
        run_inproc(srv.base_url, topics(4), tmp_path / "o")
    rows = assert_accounted(tmp_path / "o", 4)
    assert rows[(1, 1)][:2] == ("eliminated", "prompt_leak")
    assert rows[(2, 1)][:2] == ("eliminated", "identical_to_parent")
    assert rows[(3, 1)][:2] == ("eliminated", "identical_to_parent")
    assert rows[(0, 1)][0] == "kept"


def test_a_responding_model_that_echoes_the_instruction_is_eliminated(tmp_path):
    model = Model()
    model.fail("respond", lambda prompt: Reply(content=prompt), topic="topic-01")
    with ScriptedServer(model) as srv:
        run_inproc(srv.base_url, topics(2), tmp_path / "o", include_seeds=True)
    rows = assert_accounted(tmp_path / "o", 2)
    assert rows[(1, 1)][:2] == ("eliminated", "echoed_response")
    # a seed answered by echoing it is eliminated the same way (round 0 of --include-seeds)
    seed_rows = [r for r in read_jsonl(tmp_path / "o" / "rejected.jsonl") if r["round"] == 0]
    assert [(r["seed_index"], r["rule"]) for r in seed_rows] == [(1, "echoed_response")]


@pytest.mark.slow
def test_a_judge_that_echoes_its_prompt_is_unclear_retried_and_eliminated_unless_kept(tmp_path):
    """An echoed judge prompt is no verdict, though it holds the words "Equal" and "Not Equal": asked again, then
    eliminated as judge_unclear; with keep_judge_unclear the item is kept."""
    model = Model()
    model.fail("judge", lambda prompt: Reply(content=prompt), topic="topic-01")
    with ScriptedServer(model) as srv:
        run_inproc(srv.base_url, topics(2), tmp_path / "o")
        run_inproc(srv.base_url, topics(2), tmp_path / "kept", keep_judge_unclear=True)
    rows = ledger(tmp_path / "o")
    assert rows[(1, 1)][:2] == ("eliminated", "judge_unclear") and rows[(0, 1)][0] == "kept"
    judge = next(r["judge"] for r in read_jsonl(tmp_path / "o" / "rejected.jsonl") if r["seed_index"] == 1)
    assert [a["judgement"] for a in judge["answers"]] == ["unclear", "unclear"]
    assert "Second instruction:" in judge["answers"][0]["text"]
    assert ledger(tmp_path / "kept")[(1, 1)][0] == "kept"


def test_an_evolution_or_an_answer_in_another_language_is_eliminated_unless_it_was_asked_for(tmp_path):
    """Rewriting is not translating: an English seed evolved into Chinese is dropped (script_changed), and so is an
    English instruction answered in Chinese (language_changed_response). An instruction that asks for a
    translation into Chinese keeps its Chinese answer, and records.jsonl holds it as given."""
    model = Model()
    model.fail("evolve", Reply(content=CHINESE_EVOLUTION), topic="topic-01")
    model.fail("respond", Reply(content="这个主题很有意思。" + CHINESE_EVOLUTION), topic="topic-02")
    asks = "Describe topic-03 in two sentences for a curious reader, then translate both sentences into Chinese."
    model.fail("evolve", Reply(content=asks), topic="topic-03")
    model.fail("respond", Reply(content="这个主题很有意思。" + CHINESE_EVOLUTION), topic="topic-03")
    with ScriptedServer(model) as srv:
        run_inproc(srv.base_url, topics(4), tmp_path / "o")
    rows = assert_accounted(tmp_path / "o", 4)
    outcome, rule, detail = rows[(1, 1)]
    assert (outcome, rule) == ("eliminated", "script_changed") and "CJK" in detail and "LATIN" in detail
    outcome, rule, detail = rows[(2, 1)]
    assert (outcome, rule) == ("eliminated", "language_changed_response") and "'zh'" in detail and "'en'" in detail
    assert rows[(3, 1)][0] == "kept"
    kept = {r["seed_index"]: r for r in read_jsonl(tmp_path / "o" / "records.jsonl") if r["round"] == 1}
    assert kept[3]["output"].startswith("这个主题很有意思") and kept[3]["instruction"] == asks


def test_an_evolution_into_another_language_of_the_same_script_is_eliminated(tmp_path):
    """English to French keeps the Latin letters, so script_changed passes it; language_changed names it. A rewrite
    that adds a French passage for an English instruction to work on stays (it is still an English instruction)."""
    model = Model()
    model.fail("evolve", Reply(content=FRENCH_EVOLUTION), topic="topic-01")
    passage = (
        "Describe topic-02 in plain words for a curious reader, then translate your first sentence into English "
        "style as in this example:\n\nLe sujet est simple à comprendre, mais il faut le lire lentement et avec soin."
    )
    model.fail("evolve", Reply(content=passage), topic="topic-02")
    with ScriptedServer(model) as srv:
        run_inproc(srv.base_url, topics(3), tmp_path / "o")
    rows = assert_accounted(tmp_path / "o", 3)
    outcome, rule, detail = rows[(1, 1)]
    assert (outcome, rule) == ("eliminated", "language_changed") and "'fr'" in detail and "'en'" in detail
    assert rows[(2, 1)][0] == rows[(0, 1)][0] == "kept"
    assert not any("topic-01" in p for p in model.prompts("respond"))  # never answered


@pytest.mark.parametrize(
    "parent, evolution, changed",
    [
        ("Write a short poem about the rain falling on the city.", CHINESE_EVOLUTION, ("LATIN", "CJK")),
        (
            "Write a short poem about the rain falling on the city.",
            "Напишите короткое стихотворение о дожде в городе.",
            ("LATIN", "CYRILLIC"),
        ),
        (
            CHINESE_EVOLUTION,
            "Write a short poem about the rain falling on the city, then explain it.",
            ("CJK", "LATIN"),
        ),
        # what must never be dropped: a translation task, code around a Chinese sentence, other Latin languages,
        # a parent that already mixes scripts, and texts too short to tell
        (
            "Write a short poem about the rain falling on the city.",
            "Translate into Japanese, as a haiku: the rain falls on the city, 雨の街",
            None,
        ),
        (
            "写一个Python函数计算斐波那契数列的第n项",
            "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n"
            "    return a\n# 写一个函数，要求使用迭代，并给出时间复杂度分析",
            None,
        ),
        (
            "Write a short poem about the rain falling on the city.",
            "Écrivez un court poème sur la pluie qui tombe sur la ville.",
            None,
        ),
        ("Translate 'good morning' into Chinese: 早上好 and 晚上好 and 你好吗", CHINESE_EVOLUTION, None),
        ("Say hi.", "你好", None),
    ],
)
def test_script_change_is_narrow(parent, evolution, changed):
    from evol.rules.evolution import script_change

    assert script_change(parent, evolution) == changed


def test_seed_rows_are_written_in_seed_order_whatever_order_their_answers_arrive_in(tmp_path):
    # the first seeds are answered last: the seeds' rows (round 0) must still follow the seed file, as every
    # round's do, or the same run writes a different dataset.json each time
    def slow_first(request: dict) -> Reply:
        prompt = request["messages"][-1]["content"]
        if prompt.startswith("Describe topic-") and "#" not in prompt:  # a seed's own answer
            n = int(prompt.split("topic-", 1)[1][:2])
            return Reply(
                content=f"A plain answer about topic {n}, in several clear sentences for a reader.",
                delay=0.3 - 0.05 * n,
            )
        return Model()(request)

    with ScriptedServer(slow_first) as srv:
        run_inproc(srv.base_url, topics(6), tmp_path / "o", include_seeds=True, concurrency=6)
    seed_rows = [r for r in read_jsonl(tmp_path / "o" / "records.jsonl") if r["round"] == 0]
    assert [r["seed_index"] for r in seed_rows] == list(range(6))
