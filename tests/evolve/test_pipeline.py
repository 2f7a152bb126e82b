import asyncio
import random

import pytest

from evol.config import RETRY_MAX_TOKENS, RunConfig
from evol.dedup.index import Deduper
from evol.errors import FatalBackendError, RequestRejectedError
from evol.evolve.concurrency import bounded_map
from evol.evolve.evolver import Evolver
from evol.evolve.settling import RoundSettler, settle_round
from evol.models import Candidate, Completion, Models, Node, Record, Rejection, Seed, Usage
from evol.prompts import load_profile

from ..fakes import FakeChat

MODELS = Models(evolve="evo", respond="resp", judge="judge")


def evolver(answer, **cfg):
    config = RunConfig(seeds="unused", **cfg)
    chat = FakeChat(answer)
    return Evolver(config, load_profile(config.profile), chat, MODELS), chat


def good(prompt, sample):
    if sample.endswith(":evolve"):
        return "Write a sonnet about the sea that rhymes and names three ships."
    if sample.endswith(":judge"):
        return "Not Equal"
    return "Here is a sonnet about the sea, with ships named Ariel, Bounty and Calypso."


def node(i=0, text="Write a poem."):
    return Node(id=f"s{i}", seed_id=f"s{i}", seed_index=i, instruction=text)


def test_one_step_keeps_a_good_evolution_with_lineage_and_usage():
    ev, chat = evolver(good)
    out = asyncio.run(ev.step(node(), 1))
    assert isinstance(out, Record)
    assert (out.id, out.parent_id, out.round, out.model, out.response_model) == ("s0.r1", "s0", 1, "evo", "resp")
    assert out.operation in {op.name for op in ev.profile.operations}
    assert set(out.usage) == {"evolve", "judge", "respond"}
    assert [c[0] for c in chat.calls] == ["evo", "judge", "resp"]
    assert [c[1] for c in chat.calls] == ["s0.r1:evolve", "s0.r1:judge", "s0.r1:respond"]
    assert chat.calls[2][2] == out.instruction  # the responder sees the evolved instruction alone


def test_a_cheap_rule_saves_the_judge_and_responder_calls():
    ev, chat = evolver(lambda p, s: "Write a poem.")
    out = asyncio.run(ev.step(node(), 1))
    assert isinstance(out, Rejection) and out.rule == "identical_to_parent" and len(chat.calls) == 1


def test_judge_can_be_switched_off():
    ev, chat = evolver(
        lambda p, s: "Equal" if s.endswith("judge") else good(p, s), disable_rules=["no_information_gain"]
    )
    assert isinstance(asyncio.run(ev.step(node(), 1)), Record)
    assert all(not c[1].endswith("judge") for c in chat.calls)


def test_a_rejected_request_fails_the_item_and_a_fatal_error_stops_the_run():
    ev, _ = evolver(
        lambda p, s: RequestRejectedError("the endpoint rejected the request (HTTP 400): too long", status=400)
    )
    out = asyncio.run(ev.step(node(), 1))
    assert out.kind == "failed" and out.rule == "backend_error" and "HTTP 400" in out.detail and out.stage == "evolve"
    ev, _ = evolver(lambda p, s: FatalBackendError("HTTP 401", status=401))
    with pytest.raises(FatalBackendError):
        asyncio.run(ev.run_round([node(i) for i in range(5)], 1))


def test_choices_do_not_depend_on_answer_timing():
    async def jittery(ev, pool):
        inner = ev.chat.complete

        async def slow(*a, **k):
            await asyncio.sleep(random.random() / 100)
            return await inner(*a, **k)

        ev.chat.complete = slow
        return await ev.run_round(pool, 2)

    pool = [node(i, f"Task number {i}: explain topic {i}.") for i in range(40)]
    results = []
    for _ in range(2):
        ev, _ = evolver(lambda p, s: f"{p[-80:]} more {s}")
        results.append([(o.id, o.operation, getattr(o, "rule", None)) for o in asyncio.run(jittery(ev, pool))])
    assert results[0] == results[1]
    assert len({op for _, op, _ in results[0]}) > 3  # different seeds draw different operations


def rec(i, text, rnd=1):
    return Record(
        id=f"s{i}.r{rnd}",
        seed_id=f"s{i}",
        seed_index=i,
        parent_id=f"s{i}",
        round=rnd,
        operation="x",
        instruction=text,
        output="o",
    )


def test_settle_round_replaces_parents_keeps_failures_in_the_pool_and_dedups_in_seed_order():
    pool = [node(0, "alpha task"), node(1, "beta task"), node(2, "gamma task"), node(3, "delta task")]
    failed = Rejection(
        kind="eliminated",
        rule="prompt_leak",
        stage="evolve",
        id="s1.r1",
        seed_id="s1",
        seed_index=1,
        parent_id="s1",
        round=1,
        operation="x",
    )
    outcomes = [
        rec(0, "An evolved instruction about alpha."),
        failed,
        rec(2, "an evolved instruction about ALPHA!"),
        rec(3, "Something else entirely."),
    ]
    d = Deduper(0.9)
    for n in pool:
        d.add(n.id, n.instruction)
    res = settle_round(pool, outcomes, d)
    assert [n.id for n in res.pool] == ["s0.r1", "s1", "s2", "s3.r1"]
    assert [r.id for r in res.kept] == ["s0.r1", "s3.r1"]
    dup = next(r for r in res.rejected if r.kind == "duplicate")
    assert (dup.id, dup.rule, dup.duplicate_of) == ("s2.r1", "exact_duplicate", "s0.r1")


def test_a_duplicate_keeps_its_lineage_and_none_of_its_answers_whenever_it_was_found():
    """Whether a duplicate was answered depends on when it was found (before its answer when the text it repeats
    was settled already): its rejection is the same either way, without answers, and so are the run's files."""
    pool = [node(0, "alpha task"), node(1, "beta task")]
    paid = (
        Candidate(key="0", text="One answer.", model="m", origin="sample", score=7.0),
        Candidate(key="1", text="Another answer.", model="m", origin="sample", score=9.0, best=True),
    )
    outcomes = [
        rec(0, "An evolved instruction about alpha."),
        rec(1, "an evolved instruction about ALPHA!").model_copy(
            update={"candidates": paid, "usage": {"evolve": Usage(prompt_tokens=3), "respond": Usage(prompt_tokens=9)}}
        ),
    ]
    res = settle_round(pool, outcomes, Deduper(0.9))
    dup = res.rejected[0]
    assert dup.kind == "duplicate" and dup.candidates == () and dup.output is None
    assert dup.usage == {"evolve": Usage(prompt_tokens=3)}
    assert dup.lineage() == outcomes[1].lineage() and res.pool[1] == pool[1]
    # the same evolution found before it was answered: named by settling, and equal to the one found after
    early = outcomes[1].rejected(
        "duplicate", "near_duplicate", "duplicates s9 (score 0.91)", "dedup", duplicate_of="s9", score=0.91
    )
    early = early.model_copy(update={"output": None, "candidates": (), "usage": {"evolve": Usage(prompt_tokens=3)}})
    again = settle_round(pool, [outcomes[0], early], Deduper(0.9)).rejected[0]
    assert again == dup


def test_settling_as_answers_arrive_gives_the_round_end_result_whatever_the_order():
    """RoundSettler.offer in completion order settles in pool order: the earlier copy of a duplicate wins."""
    import random

    pool = [node(i, f"seed task number {i}") for i in range(40)]
    topics = [
        "volcanic islands",
        "medieval banking",
        "protein folding",
        "jazz harmony",
        "tax law in Brazil",
        "bird migration",
        "compiler backends",
    ]
    outcomes = [rec(i, f"Write a careful essay on {topics[i % 7]}.") for i in range(40)]
    outcomes[5] = Rejection(
        kind="failed",
        rule="backend_error",
        stage="evolve",
        id="s5.r1",
        seed_id="s5",
        seed_index=5,
        parent_id="s5",
        round=1,
        operation="x",
    )

    def fresh() -> Deduper:
        d = Deduper(0.9)
        for n in pool:
            d.add(n.id, n.instruction)
        return d

    at_end = settle_round(pool, outcomes, fresh())
    assert [r.id for r in at_end.kept] == [
        f"s{i}.r1" for i in (0, 1, 2, 3, 4, 6, 12)
    ]  # s5 failed: s12 is its topic's first
    assert len(at_end.rejected) == 33
    for seed in range(5):
        order = list(range(40))
        random.Random(seed).shuffle(order)
        settler = RoundSettler(pool, fresh())
        for i in order[:30]:  # some arrive, in any order; the rest come with finish()
            settler.offer(outcomes[i])
        assert settler.finish(outcomes) == at_end
        # the streaming way: every outcome offered, each settled one handed to a sink in pool order, none held
        sunk = []
        streaming = RoundSettler(pool, fresh(), sunk.append)
        for i in order:
            streaming.offer(outcomes[i])
        result = streaming.finish()
        assert (result.kept, result.rejected) == ([], []) and result.pool == at_end.pool
        assert [o for o in sunk if isinstance(o, Record)] == at_end.kept
        assert [o for o in sunk if isinstance(o, Rejection)] == at_end.rejected
        assert [o.seed_index for o in sunk] == list(range(40))


def test_a_round_without_collected_results_hands_each_to_on_done_and_finish_checks_all_came():
    seen = []

    async def double(x):
        await asyncio.sleep(0.001 * (x % 3))
        return x * 2

    assert asyncio.run(bounded_map(double, list(range(20)), 4, seen.append, collect=False)) == []
    assert sorted(seen) == [x * 2 for x in range(20)]
    settler = RoundSettler([node(0, "a"), node(1, "b")], None)
    settler.offer(rec(1, "B"))
    with pytest.raises(ValueError, match="2 of the round's outcomes are not settled: the outcome of pool entry 0"):
        settler.finish()


def test_a_stop_from_another_thread_lets_the_call_in_flight_finish_and_starts_no_other():
    import threading

    from evol.errors import Interrupted

    stop = threading.Event()

    def answer(prompt, sample):
        stop.set()  # the Ctrl-C arrives while the evolve call is in flight
        return good(prompt, sample)

    config = RunConfig(seeds="unused")
    chat = FakeChat(answer)
    ev = Evolver(config, load_profile(config.profile), chat, MODELS, stop=stop)
    with pytest.raises(Interrupted):
        asyncio.run(ev.step(node(), 1))
    assert [c[1] for c in chat.calls] == ["s0.r1:evolve"]  # answered (and paid), no judge call after it


def cut_once(prompt, sample):
    """A responder whose first answer is cut at max_tokens, and whose answer with more room is whole."""
    if sample.endswith(":respond"):
        cut = "Here is a long proof that begins with the base case and"
        return Completion(text=cut, finish_reason="length", usage=Usage(completion_tokens=len(cut.split())))
    return good(prompt, sample)


def test_an_answer_cut_at_max_tokens_is_asked_once_more_with_twice_the_room():
    ev, chat = evolver(cut_once)
    out = asyncio.run(ev.step(node(), 1))
    assert isinstance(out, Record) and out.output.startswith("Here is a sonnet")
    assert out.cut_answers == ("Here is a long proof that begins with the base case and",)
    assert [c[1] for c in chat.calls] == ["s0.r1:evolve", "s0.r1:judge", "s0.r1:respond", "s0.r1:respond:longer"]
    assert [s.max_tokens for s in chat.samplings[2:]] == [2048, 4096]
    assert out.usage["respond"].completion_tokens > len(out.output.split())  # both answers' tokens are counted
    # the seeds' answers too
    seed = asyncio.run(ev.answer_seed(Seed(id="q", index=0, instruction="Prove it.")))
    assert isinstance(seed, Record) and seed.cut_answers and seed.output.startswith("Here is a sonnet")


def test_an_answer_cut_twice_is_eliminated_with_both_and_a_plain_run_writes_no_cut_answers():
    def always_cut(prompt, sample):
        if ":respond" in sample:
            return Completion(text="It begins with", finish_reason="length")
        return good(prompt, sample)

    ev, chat = evolver(always_cut, response_sampling={"max_tokens": 6000})
    out = asyncio.run(ev.step(node(), 1))
    assert isinstance(out, Rejection) and out.rule == "truncated_response" and out.cut_answers == ("It begins with",)
    assert [s.max_tokens for s in chat.samplings[2:]] == [6000, RETRY_MAX_TOKENS]  # twice, but not past the cap
    plain = asyncio.run(evolver(good)[0].step(node(), 1))
    assert "cut_answers" not in plain.model_dump_json()  # records.jsonl as before when nothing was cut


def test_a_cut_candidate_is_asked_again_with_more_room_as_a_single_answer_is():
    """With several candidates (--answers) each one cut at max_tokens is asked once more with twice the room, under
    the sample id a single answer's retry has; the candidate keeps the cut text, and the row keeps its answer."""

    def second_cut(prompt, sample):
        if sample.endswith(":respond:1"):
            return Completion(text="Here is a long proof that begins with", finish_reason="length")
        if ":rank:" in sample:
            return "Reason: complete and correct.\nScore: 8" if ":rank:1" in sample else "Score: 5"
        return good(prompt, sample)

    ev, chat = evolver(second_cut, answers=2)
    out = asyncio.run(ev.step(node(), 1))
    assert isinstance(out, Record) and out.output.startswith("Here is a sonnet")
    first, second = out.candidates
    assert second.cut_answers == ("Here is a long proof that begins with",) and second.rule is None
    assert second.best and second.score == 8  # the longer answer was ranked, not the cut one
    assert first.cut_answers == () and "cut_answers" not in first.model_dump_json()
    sent = {c[1]: s.max_tokens for c, s in zip(chat.calls, chat.samplings, strict=True)}
    assert sent["s0.r1:respond:1"] == 2048 and sent["s0.r1:respond:1:longer"] == 4096
    assert "s0.r1:respond:longer" not in sent  # the uncut one was asked once
