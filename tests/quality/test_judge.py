"""The equality judge's verdict as real models write it: plain, in markdown, after a reasoning block, cut off."""

from __future__ import annotations

import pytest

from evol.quality import judge_reader

THINK = (
    "<think>\nThe first asks for a poem. The second asks for a poem that rhymes, so it is not equal... wait, "
    "rhyming is a new constraint.\n</think>\n\n"
)


@pytest.mark.parametrize(
    "answer, expected",
    [
        # the template's own forms, in any casing and markup
        ("Equal", "equal"),
        ("Not Equal", "not_equal"),
        ("equal", "equal"),
        ("not equal", "not_equal"),
        ("EQUAL", "equal"),
        ("NOT EQUAL.", "not_equal"),
        ("Not equal", "not_equal"),
        ("Equal.", "equal"),
        ("**Equal**", "equal"),
        ("**Not Equal**", "not_equal"),
        ("`Equal`", "equal"),
        ('"Not Equal"', "not_equal"),
        ("## Not Equal", "not_equal"),
        ("> Equal", "equal"),
        ("  \n Equal \n", "equal"),
        # the verdict first, an explanation after: the verdict decides, not the explanation's words
        ("Equal. Only the wording is different.", "equal"),
        ("Equal - the second only rephrases the first, nothing is different.", "equal"),
        ("Not equal: the second adds a constraint.", "not_equal"),
        ("Not Equal. The second asks for the same poem but in iambic pentameter.", "not_equal"),
        ("Equal\n\nExplanation: the instructions are different only in wording.", "equal"),
        ("Not equal, because the second one is the same task with a deadline.", "not_equal"),
        # synonyms
        ("Same", "equal"),
        ("They are equivalent.", "equal"),
        ("Identical.", "equal"),
        ("The same.", "equal"),
        ("They are the same.", "equal"),
        ("The two instructions are identical in scope.", "equal"),
        ("Different", "not_equal"),
        ("Unequal", "not_equal"),
        ("They are different.", "not_equal"),
        ("They differ in depth.", "not_equal"),
        ("Not the same.", "not_equal"),
        ("The second instruction is different: it adds a word limit.", "not_equal"),
        ("I think they are equal", "equal"),
        ("In my view, not equal.", "not_equal"),
        # reasoning blocks: closed, cut off, or only the closing tag (the template opened it in the prompt)
        (THINK + "Not Equal", "not_equal"),
        (THINK + "**Equal**", "equal"),
        ("<thinking>They are equal in topic.</thinking>\nNot Equal", "not_equal"),
        ("<THINK>same?</THINK> Equal", "equal"),
        ("<think>\nThe first asks for a poem. The second asks for a poem that rhymes, so they are equal", "unclear"),
        ("<think>", "unclear"),
        ("Comparing the two, the second adds a rhyme scheme.\n</think>\n\nNot Equal", "not_equal"),
        # a model that reasons aloud, then says the verdict last
        ("The first asks for a poem. The second asks for a rhyming poem about ships. Not Equal", "not_equal"),
        ("The second adds a deadline, so they are not equal.", "not_equal"),
        ("Both ask for a poem about the sea with no other requirement; they are equal.", "equal"),
        ("The second only rewords the first.\nTherefore: Equal", "equal"),
        ("Let me compare them. The second adds three constraints.\n\nVerdict: **Not Equal**", "not_equal"),
        ("Reasoning: the scope is unchanged.\nFinal answer: Equal", "equal"),
        ("Answer:\nNot Equal", "not_equal"),
        ("Equal in topic, but the second adds a rhyme scheme, so they are not equal.", "not_equal"),
        # no readable verdict
        ("", "unclear"),
        ("   ", "unclear"),
        ("maybe", "unclear"),
        ("Yes", "unclear"),
        ("The first asks for a poem and the second", "unclear"),  # cut at max_tokens mid-sentence
        ("The same topic, but the second asks for", "unclear"),  # "the same" that is no verdict
        ("Only the wording is different.", "unclear"),
        ("I cannot compare these instructions.", "unclear"),
    ],
)
def test_the_verdict_is_read_from_realistic_answers(answer, expected):
    assert judge_reader.parse_judgement(answer) == expected


def test_reasoning_and_markdown_are_taken_out_of_what_is_read():
    assert judge_reader.judge_answer(THINK + "**Not Equal**") == "Not Equal"
    assert judge_reader.judge_answer("<think>cut off mid-thought, Equal") == ""
