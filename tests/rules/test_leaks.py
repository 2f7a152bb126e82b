"""prompt_leak and meta_commentary on what real models write: markers and labels in words other than the template's,
the original and the rewrite in one answer, references to the original, spans of the prompt's own wording, and talk
about the instruction; and the look-alikes that must be kept."""

from __future__ import annotations

import pytest

from evol.prompts import load_profile
from evol.rules.evolution import check_evolution
from evol.rules.wrappers import unwrap

CODE = load_profile("code")
PARENT = "Write a function that returns the largest number in a list."
GIVEN = f"#Given Prompt#:\n{PARENT}\n\n#Rewritten Prompt#:\n"
PROMPT = CODE.operations[0].render(PARENT, __import__("random").Random(0))


def evolve(answer: str, parent: str = PARENT, prompt: str = PROMPT):
    unwrapped = unwrap(answer, CODE.labels, CODE.nouns, parent)
    return unwrapped, check_evolution(
        unwrapped.text, "stop", parent, CODE.leak_markers, wrapping=unwrapped, prompt=prompt
    )


@pytest.mark.parametrize(
    "answer, found",
    [
        # markers in other words than the template's (real Code Evol-Instruct outputs carry these)
        (
            "Write a function that returns the largest number in a list without using max().\n\n"
            "#Erroneous Code Reference#\ndef largest(xs): return xs.sort()",
            "#Erroneous Code Reference#",
        ),
        ("Write a function that returns the two largest numbers.\n#Updated Test#", "#Updated Test#"),
        # the original again, then a marker, then the rewrite
        (f"#Given Test#\n{PARENT}\n\n#Rewritten Test#\n{PARENT[:-1]} in O(n) time.", "#Given Test#"),
        (f"{PARENT}\n\nRewritten Test:\n{PARENT[:-1]} in O(n) time.", "Rewritten Test"),
        # a label in the middle, with markdown
        ("Return the largest number in a list.\n\n**New Question:** also return its index.", "New Question"),
        # a stray marker line the embedded model writes
        ("#Return the largest number\nof the list, in linear time.", "#Return the largest"),
        ("#Dependency Parsing#:\nParse the sentence and return its head words.", "#Dependency Parsing#"),
        # references to what was rewritten
        ("Modify the given test so that the function also handles empty lists.", "the given test"),
        ("Answer the original question, then return the largest number in O(1) extra space.", "the original question"),
        # spans of the evolving prompt's own wording
        (
            f"{PARENT[:-1]} in linear time. Keep any code, signatures or examples it contains.",
            "keep any code signatures or",
        ),
    ],
)
def test_what_real_models_leave_of_the_prompt_is_a_prompt_leak(answer, found):
    _, verdict = evolve(answer)
    assert not verdict.keep and verdict.rule == "prompt_leak", verdict
    assert found.casefold() in verdict.detail.casefold()


@pytest.mark.parametrize(
    "answer, label",
    [
        ("Rewritten Test:\nWrite a function that returns the two largest numbers in a list.", "Rewritten Test:"),
        ("**Updated Prompt:** Write a function that returns the two largest numbers.", "**Updated Prompt:**"),
        ("Revised instruction: Write a function that returns the two largest numbers.", "Revised instruction:"),
        ("#Rewritten Test#\nWrite a function that returns the two largest numbers.", "#Rewritten Test#"),
        ("New Question: Write a function that returns the two largest numbers.", "New Question:"),
    ],
)
def test_a_leading_label_in_any_words_is_stripped_and_recorded(answer, label):
    unwrapped, verdict = evolve(answer)
    assert verdict.keep, verdict
    assert unwrapped.text.startswith("Write a function") and unwrapped.stripped == (label,)


@pytest.mark.parametrize(
    "parent, answer",
    [
        # markdown headings (a space after the hashes), closed ones too, and C preprocessor lines
        ("Write a README for a CLI tool.", "Write a README for a CLI tool with the sections\n## Install\n## Usage ##"),
        (
            "Fix the C program.",
            "Fix the C program below so that it compiles.\n#include <stdio.h>\n#define N 10\nint main() { return N }",
        ),
        ("Explain C# generics.", "Explain C# generics with two examples, one with constraints."),
        # a task that legitimately says "the given array", and a parent that has the reference itself
        ("Sort an array.", "Sort the given array in place and return the number of swaps made."),
        ("Compare the original question with its answer.", "Compare the original question with its answer in a table."),
        # a label-looking line the parent already has
        ("New Question: what is 2+2?\nAnswer it.", "New Question: what is 2+2?\nAnswer it in base 3."),
        # words of the prompt that are common English, not the template's instructions
        ("Write a poem.", "Write a poem about the sea that is a little harder to rhyme, in the form of a sonnet."),
        # quoting the words to ask about them
        ("Explain tests.", 'Explain what a grader means by "the given test" in an exam rubric.'),
    ],
)
def test_look_alikes_are_kept(parent, answer):
    _, verdict = evolve(answer, parent=parent, prompt=CODE.operations[0].render(parent, __import__("random").Random(0)))
    assert verdict.keep, verdict


@pytest.mark.parametrize(
    "answer",
    [
        "The new instruction is indeed quite challenging. To make it harder, you just have to add a constraint.",
        "How to make it harder: ask for the two largest numbers instead of one.",
        "To make it more challenging, require the function to run in linear time.",
        "The given task is to return the largest number and its index.",
        "To increase the difficulty, require O(1) extra space.",
        # the embedded model's, from the quick start
        "The given subject and problem are inextricably linked with the problem of machine learning.",
        # and from a run over conversations (--turns 3)
        "Your instructions are already challenging! You're allowed to break them down into a single paragraph.",
        "If you want to make the original more difficult to read, you can make it harder by adding more words.",
    ],
)
def test_talk_about_the_instruction_is_meta_commentary(answer):
    _, verdict = evolve(answer)
    assert not verdict.keep and verdict.rule == "meta_commentary", verdict


@pytest.mark.parametrize(
    "answer",
    [
        "To make it harder for attackers, add rate limiting to the login endpoint of the function's web service.",
        "To make it easier to read, rewrite the function with clear names and a docstring.",
        "Write a function that returns the largest number; the new version must run in linear time.",
        "If you want to make the game harder for experienced players, which three rules would you change, and why?",
        "The task is to find the largest number in the list, using a single pass and no built-in max function.",
    ],
)
def test_instructions_that_open_like_commentary_are_kept(answer):
    _, verdict = evolve(answer)
    assert verdict.keep, verdict


def test_the_template_echo_of_the_embedded_models_quick_start_is_a_leak():
    """Read in the quick start's kept rows: a 135M model copies its instructions into the rewrite."""
    general = load_profile("general")
    op = next(o for o in general.operations if o.name == "add_constraints")
    parent = "Give me a phrase that I can use to express I am very happy."
    prompt = op.render(parent, __import__("random").Random(0))
    answer = "Rewrite it with no more than 10 additional words, and add no more than 20 words to the original."
    verdict = check_evolution(answer, "stop", parent, general.leak_markers, prompt=prompt)
    assert not verdict.keep and verdict.rule == "prompt_leak" and "20 words to the original" in verdict.detail


# --- false positives found by reading the stripper (#27): each was dropped or cut before


def test_a_last_paragraph_that_opens_like_a_remark_but_says_something_is_kept():
    text = (
        "Describe your ideal data team.\n\nLet me know if you need details about my background: I have 5 years in SQL."
    )
    unwrapped, verdict = evolve(text, parent="Describe your ideal data team.")
    assert verdict.keep and unwrapped.text == text and not unwrapped.stripped
    # the closing remark it looks like is still taken off
    remark = unwrap("Write a sonnet about rain.\n\nLet me know if you'd like any changes.")
    assert remark.text == "Write a sonnet about rain." and remark.stripped == (
        "Let me know if you'd like any changes.",
    )


def test_an_introduction_of_the_instructions_own_data_is_not_chatter():
    text = "Solve the puzzle below in three steps.\nHere is the problem:\nThree boxes hold apples, oranges and both."
    _, verdict = evolve(text, parent="Solve the puzzle below.")
    assert verdict.keep, verdict
    _, chatter = evolve("Solve the puzzle below.\n\nHere's a harder version:\nSolve it in three steps.")
    assert chatter.rule == "wrapped_evolution"


@pytest.mark.parametrize(
    "intro",
    [  # the embedded model's own openings, from the quick start and a 60-seed run
        "Here is the rewritten instruction with only the requested 10 words:",
        "Here's a brand-new instruction:",
        "Here is a rewritten version of your request:",
        "Here's a rewritten version of the given instruction that challenges your skills:",
        "Here is a rewritten version of the instruction with a hint:",
    ],
)
def test_an_introduction_that_says_more_of_the_rewrite_is_still_an_introduction(intro):
    rewrite = "Convert 3 ft to inches, then to centimetres, and show each step."
    unwrapped = unwrap(f"{intro}\n\n{rewrite}")
    assert unwrapped.text == rewrite and unwrapped.stripped == (intro,) and unwrapped.problem is None
    # the same opening after the rewrite's first line is chatter left inside it
    _, verdict = evolve(f"{rewrite}\n{intro}\nConvert 5 ft as well.", parent="Convert 3 ft to inches.")
    assert verdict.rule == "wrapped_evolution", verdict


def test_an_introduction_of_data_an_instruction_carries_is_its_own():
    for text in (
        "Here is the data for the three boxes:\nA: 3 apples, B: 4 pears.\nWhich box holds the most fruit?",
        "Here is a table with the results of the survey:\n| age | votes |\n| 30 | 12 |\nSum the votes.",
    ):
        unwrapped, verdict = evolve(text, parent="Which box holds the most fruit?")
        assert unwrapped.text == text and not unwrapped.stripped and verdict.keep, verdict


def test_an_opening_the_parent_itself_has_is_not_stripped():
    parent = "Alright, here is a question for you: what is the capital of Peru?"
    unwrapped, verdict = evolve(f"{parent} Answer in one word and name its river.", parent=parent)
    assert verdict.keep and unwrapped.text.startswith("Alright, here is a question") and not unwrapped.stripped
    # a model's own opening before a rewrite of another parent is still chatter
    other = unwrap("Alright, here is a harder version: what is the capital of Peru and its river?")
    assert other.text.startswith("what is the capital") and other.stripped


def test_yes_and_no_are_answers_not_stop_words():
    from evol.rules.response import check_response

    assert check_response("Yes.", "stop", instruction="Is 7 prime? Answer yes or no.").keep
    assert check_response("No.", "stop", instruction="Is 9 prime? Answer yes or no.").keep
    assert check_response("Well, um, okay.", "stop").rule == "stopwords_only_response"


def test_a_rewrite_that_drops_the_input_it_names_has_lost_it():
    """The quick start's seed_task_5: its parent held the question after its instruction, its rewrite did not."""
    parent = "How do you answer this question in a job interview?\nWhat do you think about when alone in a car?"
    _, verdict = evolve("How do you answer this question in a job interview?", parent=parent)
    assert verdict.rule == "lost_input" and "this question" in verdict.detail
    # kept: the input still follows, or the parent itself named it without giving it
    assert evolve(f"{parent} Answer in under 100 words.", parent=parent)[1].keep
    assert evolve("Explain this question to a child, briefly.", parent="Explain this question.")[1].keep
    assert evolve("Summarize the passage below in two lines:\nBees make honey.", parent="Summarize it.")[1].keep
    # the input first, the reference after it
    assert evolve('"Bees make honey." Summarize this passage in two lines.', parent="Summarize it.")[1].keep


def test_the_quick_starts_lost_inputs():
    """Two rows the embedded model kept: the stereotype dropped, and the email alone without its instruction."""
    parent = 'Describe a situation in which the given stereotype can harm you.\n"All Asians are smart!"'
    rewrite = "When faced with a situation where a given stereotype is used to create fear, explain its harm."
    verdict = evolve(rewrite, parent=parent)[1]
    assert verdict.rule == "lost_input" and "a given stereotype" in verdict.detail
    email = "Hi [person name],\n\nI'm writing to ask you if you are happy to be a panelist of our workshop at CVPR."
    parent = f"Generate an appropriate subjective title for the following email:\n{email}"
    verdict = evolve(email.replace("you are", "you're"), parent=parent)[1]
    assert verdict.rule == "lost_input" and "only its parent's input" in verdict.detail
    # kept: a rewrite that keeps the instruction and the email
    assert evolve(f"{parent}\nGive two titles, one formal.", parent=parent)[1].keep


def test_the_parents_instruction_without_the_input_it_carried_has_lost_it():
    """The embedded model kept this in a 60-seed run: seed_task_16's instruction, one word changed, its input gone."""
    parent = "Given a description of the symptom, identify the possible disease and suggest some medicine.\n"
    parent += "I have a fever and I am coughing."
    rewrite = "Given a description of the symptom, identify the possible disease and suggest a medicine."
    verdict = evolve(rewrite, parent=parent)[1]
    assert verdict.rule == "lost_input" and "only its parent's instruction" in verdict.detail
    # kept: the input still there, on its line or in the sentence, or a harder instruction around it
    assert evolve(f"{rewrite} Give two options and a dose for each.\nI have a fever and I am coughing.", parent=parent)[
        1
    ].keep
    inline = "Given a description of the symptom (I have a fever and I am coughing), identify the possible disease."
    assert evolve(inline, parent=parent)[1].keep
    # and a parent of one line, which carried no input: nothing to lose
    one_line = "Suggest some medicine for a fever and a cough."
    assert evolve("Suggest some medicine for a fever and a cough, with a dose.", parent=one_line)[1].keep


def test_this_prompt_is_the_templates_word_unless_the_parent_is_about_prompts():
    chatter = "I'm so glad you reached out to me with this prompt. This idiom is about black sheep in a family."
    assert evolve(chatter, parent="Explain the idiom 'black sheep'.")[1].rule == "prompt_leak"
    about = "Improve this prompt for an image model by naming a lens and a light source."
    assert evolve(about, parent="Improve this prompt for an image model: a cat on a roof.")[1].keep
