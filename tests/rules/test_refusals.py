"""The refusal and wrapper rules over phrasings collected from how different chat models actually word them."""

import pytest

from evol.prompts import load_profile
from evol.rules.evolution import check_evolution
from evol.rules.refusals import refusal
from evol.rules.response import check_response
from evol.rules.wrappers import unwrap
from evol.text import word_count

PARENT = "Write a short poem about autumn leaves."
LEAKS = ("given prompt", "#rewritten prompt#")


def evo(text, parent=PARENT, profile="general"):
    p = load_profile(profile)
    u = unwrap(text, p.labels, p.nouns)
    return u, check_evolution(u.text, "stop", parent, LEAKS, wrapping=u)


@pytest.mark.parametrize(
    "text",
    [
        "I'm sorry, but I can't help with making this prompt more difficult.",
        "I’m sorry, but I can’t assist with that request.",
        "I cannot create a more complex version of this prompt, as it could be used to cause harm.",
        "As an AI language model, I am not able to rewrite prompts that involve personal data.",
        "As an AI developed by a research lab, I must keep my answers safe, so I won't rewrite this.",
        "I'm unable to make this prompt harder without changing its meaning.",
        "I won't rewrite this instruction.",
        "I apologize, but I cannot fulfill this request.",
        "Sorry, I can't do that.",
        "Unfortunately, I cannot provide a rewritten version of this prompt.",
        "I must respectfully decline to rewrite this prompt.",
        "I understand you'd like a harder version, but I can't create content on this topic.",
        "That's not something I can help with. Could you give me another prompt?",
        "**I'm sorry, but I cannot complete this task.**",
        "I'm just an AI, so I can't judge which version is harder.",
        "抱歉，我无法帮助你改写这个指令。",
        "申し訳ありませんが、このご依頼にはお応えできません。",
        "Lo siento, pero no puedo reescribir esta instrucción.",
        "Je suis désolée, mais je ne peux pas réécrire cette consigne.",
        "Es tut mir leid, aber ich kann diese Anweisung nicht umschreiben.",
    ],
)
def test_a_refusing_evolution_is_eliminated(text):
    _, v = evo(text)
    assert not v.keep and v.rule == "refused_evolution" and v.detail


@pytest.mark.parametrize(
    "text",
    [
        "Explain why a program says 'I'm sorry' before it crashes, and how to log the cause.",
        "\"I'm sorry, Dave. I'm afraid I can't do that.\" Analyse how this line from 2001 builds menace.",
        "I can't get my Flask app to start on port 80; list three likely causes and how to check each.",
        "I can't help but wonder why leaves turn red; explain the chemistry in under 150 words.",
        "I can't write a recursive parser that avoids stack overflow; write one in Python with an explicit stack.",
        "Unfortunately, the server cannot handle bursts of traffic. Design a queue that smooths them.",
        "No puedo dormir bien por la noche; dame cinco consejos basados en estudios.",
        "As an AI language model, what are three limits you have when you summarise legal texts?",
        'Write a dialogue in which a support agent says "I cannot help with that" politely, then escalates.',
    ],
)
def test_a_genuine_instruction_that_mentions_a_refusal_is_kept(text):
    # the Spanish one rewrites a Spanish parent: from an English one it would be a language change
    spanish = text.startswith("No puedo")
    _, v = evo(text, parent="Dame consejos para dormir mejor por la noche, por favor." if spanish else PARENT)
    assert v.keep, v


def test_a_refusal_phrase_the_parent_already_says_is_no_signal():
    parent = "I'm sorry, but I can't find my keys. Where should I look first?"
    _, v = evo("I'm sorry, but I can't find my keys; list five places to look, ordered by likelihood.", parent=parent)
    assert v.keep
    assert refusal("I'm sorry, but I can't find my keys; where are they?", parent) is None


@pytest.mark.parametrize(
    "wrapped, clean",
    [
        (
            "Sure! Here's a more challenging version of the prompt:\n\nWrite a sonnet about autumn leaves that rhymes ABAB.",
            "Write a sonnet about autumn leaves that rhymes ABAB.",
        ),
        (
            "Here is the rewritten instruction:\nWrite a haiku about autumn leaves falling on a river.",
            "Write a haiku about autumn leaves falling on a river.",
        ),
        (
            "Certainly. A harder version could be: Write a poem about autumn leaves in which every line starts with L.",
            "Write a poem about autumn leaves in which every line starts with L.",
        ),
        (
            "**Rewritten Prompt:**\nWrite a poem about autumn leaves from the point of view of the tree.",
            "Write a poem about autumn leaves from the point of view of the tree.",
        ),
        (
            "#Rewritten Prompt#:\nWrite a poem about autumn leaves in free verse.",
            "Write a poem about autumn leaves in free verse.",
        ),
        (
            'Okay, happy to help. Here\'s my attempt:\n\n"Write a poem about autumn leaves using only words of one syllable."',
            "Write a poem about autumn leaves using only words of one syllable.",
        ),
        (
            "```\nWrite a poem about autumn leaves that ends with a question.\n```",
            "Write a poem about autumn leaves that ends with a question.",
        ),
        (
            "Write a poem about autumn leaves with exactly three stanzas.\n\nThis version adds a constraint on the structure.",
            "Write a poem about autumn leaves with exactly three stanzas.",
        ),
        (
            "Write a poem about autumn leaves that names four trees. Let me know if you'd like it harder still!",
            "Write a poem about autumn leaves that names four trees.",
        ),
        (
            "Of course!\n\n“Write a limerick about autumn leaves that mentions a rake.”\n\nI hope this works for you.",
            "Write a limerick about autumn leaves that mentions a rake.",
        ),
        (
            "Here's a tougher take on it:\n\n> Write a poem about autumn leaves in the voice of a wind.\n\nI've added a narrator.",
            "Write a poem about autumn leaves in the voice of a wind.",
        ),
    ],
)
def test_a_wrapped_but_clean_rewrite_is_kept_without_its_wrapper(wrapped, clean):
    u, v = evo(wrapped)
    assert v.keep and u.text == clean and u.stripped


@pytest.mark.parametrize(
    "text, profile",
    [
        ("New question: Implement an LRU cache in O(1) per operation without using OrderedDict.", "code"),
        ("**Rewritten question:** Implement an LRU cache in O(1) per operation.", "code"),
        (
            "New problem: A tank holds 40 litres and leaks 3 litres an hour while filling at 5. When is it full from 10 litres?",
            "math",
        ),
        ("Harder problem:\nA tank holds 40 litres. How long does it take to fill at 5 litres a minute?", "math"),
    ],
)
def test_labels_come_from_each_profiles_vocabulary(text, profile):
    u, v = evo(
        text,
        parent="Implement a cache." if profile == "code" else "A tank holds 40 litres. Fill time?",
        profile=profile,
    )
    assert v.keep and u.stripped and not u.text.lower().startswith(("new", "**", "harder"))


@pytest.mark.parametrize(
    "text, problem",
    [
        (
            "Sure! Here are two options:\n\nOption 1: Write a sonnet about leaves.\n\nOption 2: Write a haiku about leaves.",
            "several versions",
        ),
        (
            "Here's a harder version:\n\nWrite a sonnet about leaves.\n\nOr:\n\nWrite a villanelle about leaves.",
            "several versions",
        ),
        ("Version 1: Write a sonnet about leaves.\nVersion 2: Write an ode to leaves.", "several versions"),
        (
            "Here's a harder version:\n\nWrite a sonnet about leaves.\n\nExplanation: I added a form so the answer is harder.",
            "explanation",
        ),
        ("Write a sonnet about leaves.\n\nChanges made:\n- added the sonnet form\n- kept the topic", "explanation"),
        ("This version adds a constraint on rhyme and keeps the topic of autumn.", "explains changes"),
        ("Write a sonnet about leaves.\nHere's another version:\nWrite a haiku about leaves.", "versions"),
        ("Sure! Here's a more challenging version of the prompt:", "only chatter"),
    ],
)
def test_chatter_left_inside_eliminates_as_wrapped_evolution(text, problem):
    _, v = evo(text)
    assert not v.keep and v.rule == "wrapped_evolution" and problem in v.detail


@pytest.mark.parametrize(
    "text",
    [
        "Classify the following sentences as positive or negative:\n1. I love it.\n2. I hate it.",
        "Here is a table of sales data:\n| month | sales |\n| Jan | 10 |\nCompute the growth rate from it.",
        "Write a function that sums a list.\n\nNote: the input may be empty.",
        "Answer in this format:\nAnswer: <one word>\nExplanation: <one sentence>",
        "Compare the two plans below.\nOption 1: rent a flat.\nOption 2: buy a house.\nWhich costs less over 10 years?",
        "Write an email inviting the team to a retreat. If you need to, invent the dates.",
        'Quote the line "Here is the rewritten instruction:" and explain what it tells a reader.',
    ],
)
def test_instructions_that_only_look_like_chatter_are_left_alone(text):
    u, v = evo(text)
    assert v.keep and u.text == text and not u.stripped


@pytest.mark.parametrize(
    "text",
    [
        "I can't help with that request.",
        "I’m not able to provide that information.",
        "As an AI language model, I cannot provide that.",
        "Unfortunately, I can't assist with creating that content.",
        "That's not something I can help with, but I'm happy to help with something else.",
        "I must decline to answer this question.",
        "I apologize, but I won't be able to do this.",
        "抱歉，我无法提供这方面的帮助。",
        "我不能帮助你完成这个请求。",
        "对不起，我不能回答这个问题。",
        "作为一个AI语言模型，我无法提供医疗建议。",
        "申し訳ありませんが、その質問にはお答えできません。",
        "申し訳ございませんが、ご依頼の内容には対応できません。",
        "Lo siento, pero no puedo ayudarte con eso.",
        "Lamentablemente, no puedo proporcionar esa información.",
        "Je suis désolé, mais je ne peux pas répondre à cette demande.",
        "Désolée, je ne suis pas en mesure de vous aider.",
        "Es tut mir leid, aber ich kann Ihnen dabei nicht helfen.",
        "Ich kann Ihnen dabei nicht helfen.",
        "Leider kann ich diese Anfrage nicht erfüllen.",
        "Mi dispiace, ma non posso aiutarti con questa richiesta.",
        "Desculpe, mas não posso ajudar com isso.",
        "죄송하지만 그 요청은 도와드릴 수 없습니다.",
    ],
)
def test_a_short_refused_answer_is_eliminated_with_or_without_sorry(text):
    v = check_response(text, "stop", instruction="Tell me how to pick a lock.")
    assert not v.keep and v.rule in ("refused_response", "sorry_short_response")
    if "sorry" not in text.lower():
        assert v.rule == "refused_response"


def test_the_papers_sorry_rule_still_comes_first():
    assert check_response("Sorry, I can't help with that.", "stop").rule == "sorry_short_response"
    assert (
        check_response("Sorry, I can't help with that.", "stop", enabled=lambda r: r != "sorry_short_response").rule
        == "refused_response"
    )


LONG_HELP = (
    "Here is how to do it. First, back up the data and note the current version. Second, download the new "
    "release from the official site and check its signature against the published key. Third, stop the "
    "service, replace the binary, and start it again while watching the log for errors. Fourth, run the "
    "smoke tests and compare the response times with the numbers you noted before. If anything looks "
    "wrong, restore the backup, which takes about two minutes, and open an issue with the log attached. "
    "Finally, tell the team which version is live so nobody debugs the old one by mistake."
)


@pytest.mark.parametrize(
    "opening",
    [
        "Sorry for the wait! ",
        "I'm sorry to hear your upgrade failed. ",
        "I can't see your screen, but this usually works. ",
        "I cannot stress enough how important backups are. ",
        "Lo siento mucho por el problema. ",
        "抱歉让你久等了。",
        "As an AI language model, I cannot run commands for you, but here is a plan. ",
    ],
)
def test_a_long_helpful_answer_that_apologises_or_says_i_cant_is_kept(opening):
    v = check_response(opening + LONG_HELP, "stop", instruction="How do I upgrade the server safely?")
    assert v.keep, v


def test_a_refusal_the_instruction_asks_for_is_kept():
    v = check_response(
        "I can't help you.",
        "stop",
        instruction="Translate into English: 'No puedo ayudarte.' Reply with: I can't help you.",
    )
    assert v.keep


def test_cjk_answers_are_counted_by_characters_not_runs():
    assert word_count("抱歉，我无法提供这方面的帮助。") < 10
    assert word_count("这是一个很长的回答。" * 30) > 80
    long_zh = "抱歉让你久等了。" + "首先备份数据，然后下载新版本并核对签名，接着停止服务、替换程序并重新启动。" * 6
    assert check_response(long_zh, "stop").keep


def test_disabled_new_rules_do_not_fire():
    def off(r):
        return r not in ("refused_evolution", "wrapped_evolution", "refused_response")

    u = unwrap(
        "Option 1: Write a sonnet.\nOption 2: Write a haiku.\n\nLet me know which you prefer. Here is another version:"
    )
    assert check_evolution("I cannot create that.", "stop", PARENT, LEAKS, off).keep
    assert check_evolution("Write a sonnet about leaves.", "stop", PARENT, LEAKS, off, wrapping=u).keep
    assert check_response("I can't help with that request.", "stop", enabled=off).keep
