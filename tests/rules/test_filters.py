import pytest

from evol.quality import judge_reader
from evol.rules.evolution import check_evolution
from evol.rules.judgement import check_judgement
from evol.rules.response import check_response
from evol.rules.wrappers import unwrap
from evol.text import normalize


def check_evo(text, parent="Write a poem.", finish="stop", phrases=("given prompt", "#rewritten prompt#")):
    return check_evolution(text, finish, parent, phrases)


@pytest.mark.parametrize(
    "text, finish, rule",
    [
        ("   ", "stop", "empty_evolution"),
        ("Write a long poem about rain in exactly", "length", "truncated_evolution"),
        ("write a POEM!", "stop", "identical_to_parent"),
        ("Write a poem, as the given prompt says, about rain.", "stop", "prompt_leak"),
        ("#Rewritten Prompt# Write a poem about rain.", "stop", "prompt_leak"),
    ],
)
def test_evolution_rules(text, finish, rule):
    v = check_evo(text, finish=finish)
    assert not v.keep and v.rule == rule and v.detail


def test_a_good_evolution_passes_and_words_already_in_the_parent_are_no_leak():
    assert check_evo("Write a sonnet about rain in iambic pentameter.").keep
    parent = "Find the bias in the given prompt."
    assert check_evolution(
        "Find the bias in the given prompt, citing two studies.", "stop", parent, ["given prompt"]
    ).keep


def test_disabled_rules_do_not_fire():
    v = check_evolution("", "stop", "p", [], enabled=lambda r: r != "empty_evolution")
    assert v.keep


def test_unwrap_strips_an_echoed_label_only_at_the_start():
    assert unwrap("#Rewritten Prompt#:\nWrite a sonnet.").text == "Write a sonnet."
    assert unwrap("  Created Prompt: Do X.  ").text == "Do X."
    assert unwrap("Write about the #Rewritten Prompt# idea.").text == "Write about the #Rewritten Prompt# idea."


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("Equal", "equal"),
        ("equal.", "equal"),
        ("Not Equal", "not_equal"),
        ("NOT EQUAL", "not_equal"),
        ("They are different.", "not_equal"),
        ("I think they are equal", "equal"),
        ("maybe", "unclear"),
    ],
)
def test_judgement_parsing(answer, expected):
    assert judge_reader.parse_judgement(answer) == expected


def test_an_equal_judgement_eliminates_and_an_unclear_one_too_unless_kept():
    assert check_judgement("equal").rule == "no_information_gain"
    assert check_judgement("not_equal").keep
    assert check_judgement("unclear").rule == "judge_unclear"
    assert check_judgement("unclear", keep_unclear=True).keep
    assert check_judgement("unclear", enabled=lambda rule: rule != "judge_unclear").keep


def test_sorry_rule_counts_words():
    short = "Sorry, I can't do that."
    assert check_response(short, "stop").rule == "sorry_short_response"
    long = "Sorry for the long answer. " + " ".join(f"point{i}" for i in range(80))
    assert check_response(long, "stop").keep
    assert check_response(short, "stop", sorry_max_words=3).keep


@pytest.mark.parametrize(
    "text, rule",
    [
        ("", "empty_response"),
        ("It is what it is, and that is that!", "stopwords_only_response"),
        ("...!?", "stopwords_only_response"),
        ("Paris is the capital of France.", None),
    ],
)
def test_response_rules(text, rule):
    v = check_response(text, "stop")
    assert v.rule == rule


def test_truncated_response():
    assert check_response("Some real content here", "length").rule == "truncated_response"


def test_normalize_folds_case_punctuation_and_space():
    assert normalize("  Hello,   WORLD!! ") == normalize("hello world") == "hello world"


def test_an_answer_that_repeats_an_earlier_turn_of_its_conversation_is_an_echo():
    """The embedded model answered a conversation's last turn with its previous answer again (a run with --turns)."""
    from evol.rules.response import check_response

    before = "Wild Yeast Co., Crust Theory and The Slow Loaf, each for its craft."
    earlier = ["Give me three more, each with a one-line reason.", before]
    v = check_response("Wild Yeast Co., Crust Theory, and the Slow Loaf, each for its craft.", "stop", earlier=earlier)
    assert (v.keep, v.rule) == (False, "echoed_response") and "earlier turn" in v.detail
    assert check_response(
        f"{before} For a university shop, The Slow Loaf: students like it.", "stop", earlier=earlier
    ).keep
