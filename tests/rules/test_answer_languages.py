"""language_changed_response: an answer in another language than its instruction is dropped; one the conversation
asked for (named, a translation, quoted text, an earlier turn in it) is kept, and so are the seeds' own answers
(tests/multilingual.py's texts)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evol.rules.languages import _identifier, answer_language_change
from evol.rules.response import check_response

from ..multilingual import ANSWER_LOOKALIKES, ANSWERS, TASKS, answer_drifts

SEEDS = Path(__file__).resolve().parents[2] / "datasets" / "seeds" / "self_instruct_seed_tasks.jsonl"


def verdict(instruction: str, answer: str, earlier: tuple[str, ...] = (), **kw):
    return check_response(answer, "stop", instruction=instruction, earlier=earlier, **kw)


@pytest.mark.parametrize("a, b, instruction, answer", answer_drifts(), ids=[f"{a}-{b}" for a, b, *_ in answer_drifts()])
def test_an_answer_in_another_language_than_its_instruction_is_dropped(a, b, instruction, answer):
    v = verdict(instruction, answer)
    assert (v.keep, v.rule) == (False, "language_changed_response")
    assert f"'{b}'" in v.detail and f"'{a}'" in v.detail


@pytest.mark.parametrize("n, answers", ANSWERS, ids=[str(n) for n, _ in ANSWERS])
def test_an_answer_in_its_instructions_language_is_kept(n, answers):
    for code, answer in answers.items():
        assert verdict(TASKS[n][code], answer).keep, code


@pytest.mark.parametrize(
    "instruction, answer, earlier", ANSWER_LOOKALIKES, ids=[str(i) for i in range(len(ANSWER_LOOKALIKES))]
)
def test_an_answer_in_the_language_the_conversation_asked_for_is_kept(instruction, answer, earlier):
    assert verdict(instruction, answer, earlier).keep, answer_language_change(instruction, answer, earlier)


def test_the_seed_tasks_own_answers_are_kept():
    """175 instructions with their outputs, among them a translation into Chinese and one into an Arabic dialect."""
    kept = []
    for line in SEEDS.read_text(encoding="utf-8").splitlines():
        task = json.loads(line)
        for inst in task["instances"]:
            instruction = "\n\n".join(x for x in (task["instruction"], inst.get("input")) if x)
            kept.append(verdict(instruction, inst["output"] or "-").rule != "language_changed_response")
    assert len(kept) >= 175 and all(kept)


def test_made_up_words_are_no_language_however_sure_the_identifier_is():
    """A scripted or broken model's made-up words read as Tagalog with full confidence; without Tagalog's
    function words they say nothing of the answer's language."""
    made_up = (
        "Keat acai tring troutsouswingtho ana ainplangcousso hertre jouchear rengsoung aistain ouck paikor. "
        "Hutshearit aingmosit anghot setwirnaitshes sengditfackcut teckchot ana det plannet founusnan seckpuck acai."
    )
    code, p = _identifier().classify(made_up)
    assert (code, p >= 0.99) == ("tl", True)  # why the guard is needed
    assert verdict(TASKS[1]["en"], made_up).keep
    # real Tagalog holds its function words, and is read as such
    tagalog = (
        "Ang listahan ay maaaring baguhin pagkatapos itong gawin, pero ang tuple ay hindi na mababago. Gamitin "
        "ang listahan para sa mga bagay na dumarami, at ang tuple para sa mga tala na hindi nagbabago."
    )
    v = verdict(TASKS[1]["en"], tagalog)
    assert (v.keep, v.rule) == (False, "language_changed_response")


def test_an_answer_that_mixes_languages_or_an_instruction_too_short_to_tell_is_no_signal():
    en, fr = ANSWERS[0][1]["en"], ANSWERS[0][1]["fr"]
    assert verdict(TASKS[1]["en"], f"{fr}\n\n{en}").keep  # which one would it have drifted into?
    assert verdict("Sort these numbers.", fr).keep  # three words: too short to tell


def test_it_can_be_switched_off():
    a = ANSWERS[0][1]
    assert verdict(TASKS[1]["en"], a["fr"], enabled=lambda rule: rule != "language_changed_response").keep
