"""Every elimination rule by name: what ``--disable-rule`` accepts, what the manifest lists, the README's table.

A rule is named where it fires (``filters``, ``pipeline``, ``dedup``); this registry is the one list of those
names. The README's table is this registry printed (``python -m evol.rules.registry``), and a test keeps the two equal.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    """One row of the table: the rule(s) that catch one kind of failure (at the evolving and answering stage)."""

    names: tuple[str, ...]
    catches: str


REGISTRY: tuple[Rule, ...] = (
    Rule(
        ("no_information_gain",),
        "an LLM judge finds the evolution *Equal* to its parent (same constraints, same depth and breadth)",
    ),
    Rule(
        ("judge_unclear",),
        "the judge's answer reads as neither *Equal* nor *Not Equal* (empty, off-script, or cut off mid-thought), again on one retry; `--keep-judge-unclear` keeps such evolutions instead",
    ),
    Rule(
        ("rank_unclear",),
        "`rank_unclear` | with several candidate answers (`--answers`, `--evolve-answers`), the ranking judge gave no readable 1-10 score to any of them, again on one retry each; switched off, the first candidate that passed becomes the output, unranked",
    ),
    Rule(("sorry_short_response",), 'the answer says "sorry" in fewer than 80 words (the paper\'s rule)'),
    Rule(
        ("refused_response",),
        'the answer opens with a refusal and is short (under the same 80 words; Chinese and Japanese counted at two characters a word): "I can\'t help with that request.", "As an AI language model, I cannot…", "抱歉，我无法…", "申し訳ありませんが…できません", "Lo siento, pero no puedo…", "Je suis désolé, mais je ne peux pas…", "Ich kann Ihnen dabei nicht helfen" (also Portuguese, Italian, Russian, Korean); a long helpful answer that apologises or says "I can\'t" in passing is kept, and a phrase the instruction itself contains is no signal',
    ),
    Rule(
        ("refused_evolution",),
        'the evolving model refused instead of rewriting: the rewrite *opens* with "I\'m sorry, but I can\'t…", "I cannot create…", "As an AI language model, I…", "I\'m unable to…", "I won\'t…" or the same in the languages above; an instruction that quotes a refusal or asks about one ("Explain why a program says \'I\'m sorry\'"), a user\'s own "I can\'t get my code to run", and a phrase the parent already contains are kept',
    ),
    Rule(
        ("wrapped_evolution",),
        'the rewrite comes with chatter that cannot be taken off: several versions offered ("Option 2:", "Here\'s another version:"), an explanation of the changes ("Changes made:", "Explanation: I added…"), only an introduction and no rewrite, or chatter left inside. Chatter that *can* be taken off is stripped before any check, and kept in the row\'s `stripped` field for an audit: an introduction ("Sure! Here\'s a more challenging version of the prompt:", "Certainly. A harder version could be:"), a label from the profile\'s own templates ("**Rewritten Prompt:**", "New question:", "New problem:"), surrounding quotes, a code fence or a block quote, and a closing remark ("This version adds…", "Let me know if you\'d like…")',
    ),
    Rule(
        ("no_final_instruction",),
        'an operation with an `extract` marker (the `auto` profile) got an answer without that final section: only the text after its last "#Final Instruction#" heading is the evolution',
    ),
    Rule(("stopwords_only_response",), "the answer is only punctuation and stop words"),
    Rule(
        ("prompt_leak",),
        'the evolution repeats words of the evolving prompt that its parent did not already contain: the profile\'s own section markers ("#Rewritten Prompt#") and the phrases its templates forbid by name ("given prompt", …)',
    ),
    Rule(("empty_evolution", "empty_response"), "nothing came back"),
    Rule(
        ("script_changed",),
        "the evolution is written in another script than its parent (Latin, Cyrillic, Han, …): the evolving model answered in another language; switch it off for seeds meant to be translated",
    ),
    Rule(("identical_to_parent",), "the evolution is its parent again (after folding case, punctuation and spaces)"),
    Rule(("truncated_evolution", "truncated_response"), "the model stopped at `max_tokens` (`finish_reason=length`)"),
    Rule(
        ("content_filtered",),
        "the endpoint's content filter withheld the evolution or the answer (`finish_reason=content_filter`)",
    ),
    Rule(("echoed_response",), "the answer only repeats the instruction (after folding case, punctuation and spaces)"),
    Rule(
        ("too_long",),
        "the evolution is longer than `max_instruction_chars` (default 20,000 characters): a runaway rewrite, not a harder instruction",
    ),
    Rule(
        ("exact_duplicate", "near_duplicate"),
        "the instruction repeats a seed or an earlier kept evolution (rapidfuzz, `--dedup-threshold`, default 0.9); the earliest copy is kept. Near matches are looked for in other seeds' lineages only: an in-depth evolution stays close to its own seed and earlier evolutions by design, and whether it gained anything is the judge's call. An exact repeat (after folding case, punctuation and spaces) of anything, its own ancestors included, is an `exact_duplicate`",
    ),
)

NAMES: tuple[str, ...] = tuple(name for rule in REGISTRY for name in rule.names)


def table(indent: str = "   ") -> str:
    """The README's table of rules (Markdown), indented to sit in its numbered list."""
    lines = ["| rule | what it catches |", "|---|---|"]
    lines += [f"| {', '.join(f'`{n}`' for n in rule.names)} | {rule.catches} |" for rule in REGISTRY]
    return "\n".join(indent + line for line in lines)


if __name__ == "__main__":
    print(table())
