"""language_changed: a rewrite in another language of the same script is dropped; one that only carries another
language (a passage to translate, a quoted example, code, names) is kept (tests/multilingual.py's texts)."""

from __future__ import annotations

import pytest

from evol.rules.evolution import check_evolution
from evol.rules.languages import language_change, languages

from ..multilingual import LOOKALIKES, TASKS, drift_pairs


def verdict(parent: str, text: str, **kw):
    return check_evolution(text, "stop", parent, (), **kw)


@pytest.mark.parametrize("task", TASKS, ids=lambda t: "-".join(t))
def test_each_language_of_a_task_is_read_as_itself(task):
    for code, text in task.items():
        assert languages(text) == {code}, text


@pytest.mark.parametrize("a, b, parent, rewrite", drift_pairs(), ids=[f"{a}-{b}" for a, b, *_ in drift_pairs()])
def test_a_rewrite_that_drifted_into_another_language_is_dropped(a, b, parent, rewrite):
    v = verdict(parent, rewrite)
    assert (v.keep, v.rule) == (False, "language_changed")
    assert f"'{b}'" in v.detail and f"'{a}'" in v.detail


@pytest.mark.parametrize("parent, rewrite", LOOKALIKES, ids=range(len(LOOKALIKES)))
def test_a_rewrite_that_only_carries_another_language_is_kept(parent, rewrite):
    assert verdict(parent, rewrite).keep, language_change(parent, rewrite)


def test_it_can_be_switched_off_for_seeds_meant_to_be_translated():
    task = TASKS[0]
    assert verdict(task["en"], task["fr"], enabled=lambda rule: rule != "language_changed").keep


def test_a_parent_in_several_languages_or_none_is_no_signal():
    en, fr = TASKS[1]["en"], TASKS[1]["fr"]
    assert language_change(f"{en}\n\n{fr}", TASKS[1]["es"]) is None  # which one would it have drifted from?
    assert language_change("Sort these numbers.", fr) is None  # four words: too short to tell
    assert language_change(en, "Trie ces nombres.") is None


def test_code_quotes_and_names_do_not_count_as_prose():
    parent = TASKS[1]["en"]
    # a short English line around code, a SQL query and a list of names: no paragraph of another language
    rewrite = (
        "Also handle the case below, and keep it fast.\n\n"
        "```python\ndef moyenne(valeurs):\n    return sum(valeurs) / len(valeurs)\n```\n\n"
        "SELECT d.name, d.budget FROM instructor i JOIN department d ON i.dept_name = d.name\n\n"
        "Country: China, India, US, Brazil, Australia, Japan"
    )
    assert languages(rewrite) <= {"en"} and language_change(parent, rewrite) is None


def test_made_up_words_do_not_make_a_translation():
    """Made-up words and identifiers can read as Spanish at 0.99 (a scripted model's pseudo-words did): read per
    sentence, the English sentence beside them keeps the rewrite English, and a rewrite that keeps most of its
    parent's words is in its parent's language all the same."""
    names = "mosaicriver meadownectar lagoonlantern cinderfalcon quiverobsidian lanternorchard rampartlagoon"
    question = f"{names} quiverpylon rampartquiver [seed:112 r:2] Write a funny interview question."
    assert languages(question) == {"es"}  # why it needs both guards
    parent = "Write a funny interview question. Why did you choose this question?"
    assert language_change(parent, f"{question} Why did you choose this question?") is None
    assert language_change(parent, f"{question} Why this question?") is None  # no English sentence, but its words
