"""clarification_response: an answer that asks back for what the evolution lost is a failed evolution; the look-alikes
(an answer that offers more after answering, a message or questions the instruction asked for, a riddle) are kept."""

from __future__ import annotations

import pytest

from evol.rules.clarifications import clarification
from evol.rules.response import check_response


@pytest.mark.parametrize(
    "answer, instruction",
    [
        # as chat models answer an instruction whose input is missing
        ("Could you please provide the passage you would like me to rewrite?", "Rewrite the passage below formally."),
        ("Sure! Please provide the code snippet you'd like me to optimize.", "Optimize the following code snippet."),
        ("Understood. Please send me the table and I'll sort it by price.", "Sort the table by price."),
        (
            "I'd be happy to help! However, I don't see any text attached to your message. Could you share it?",
            "Summarize the article in three bullet points.",
        ),
        ("It seems the list of numbers is missing from your message.", "Find the median of the given list of numbers."),
        ("I'll need more details about your project before I can write the proposal.", "Write the project proposal."),
        ("You haven't provided the sentence. What should I translate?", "Translate the sentence into German."),
        # ... and an instruction too vague to answer
        ("Sure! What topic would you like the poem to be about?", "Write a poem."),
        ("Of course. Which programming language do you want the example in?", "Give an example of recursion."),
        # other languages
        ("请提供您想要改写的段落。", "改写下面的段落，使其更正式。"),
        ("¿Podrías proporcionarme el texto que quieres resumir?", "Resume el texto siguiente."),
        ("Pourriez-vous fournir le texte à traduire ?", "Traduisez le texte ci-dessous."),
    ],
)
def test_an_answer_that_asks_back_is_eliminated(answer, instruction):
    assert clarification(answer, instruction)
    verdict = check_response(answer, "stop", instruction=instruction)
    assert not verdict.keep and verdict.rule == "clarification_response" and "asks back" in verdict.detail


@pytest.mark.parametrize(
    "answer, instruction",
    [
        # answers, then offers more
        ("Paris is the capital of France. Would you like to know more about its history?", "What is the capital?"),
        ("Here is the sorted list: 1, 3, 5, 8. Let me know if you need it in descending order too.", "Sort 5 1 8 3."),
        # the instruction asked for a message that itself asks for something
        (
            "Dear Ms. Lee, could you please provide the invoice for March? Thank you, Tom",
            "Write an email to a supplier asking for the March invoice.",
        ),
        # the instruction asked for questions, or a riddle (not put to "you")
        (
            "1. What is your plan for housing? 2. How will you fund it?",
            "Write two questions a journalist asks a mayor.",
        ),
        ("What has keys but can't open locks?", "Tell me a riddle."),
        # a phrase the instruction itself contains
        ("Please provide the passage.", 'What does "please provide the passage" mean in an exam?'),
        # short, correct, and no question
        ("Yes.", "Is 7 a prime number? Answer yes or no."),
        ("No, 91 = 7 × 13.", "Is 91 prime?"),
    ],
)
def test_answers_that_only_look_like_asking_back_are_kept(answer, instruction):
    assert clarification(answer, instruction) is None


def test_a_long_answer_that_ends_with_a_request_has_answered_first():
    sentence = "The function walks the list once and keeps the running maximum."
    ask = " Could you please provide more examples?"
    assert clarification(sentence + ask, "Explain it.")  # 15 words: it asks more than it says
    assert clarification(" ".join([sentence] * 6) + ask, "Explain it.") is None  # 71 words: an answer


def test_the_rule_can_be_switched_off():
    text = "Could you please provide the passage you would like me to rewrite?"
    assert check_response(text, "stop", enabled=lambda r: r != "clarification_response", instruction="Rewrite it.").keep
