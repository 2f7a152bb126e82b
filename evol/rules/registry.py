"""Every elimination rule by name: what ``--disable-rule`` accepts, what the manifest lists, the README's table.

Each rule's row stands beside the code that fires it (``evolution``, ``response``, ``judgement``, ``endpoint``,
``duplicates``); this module only puts the rows in the table's order. The README's table is this registry
printed (``python -m evol.rules``), and a test keeps the two equal.
"""

from __future__ import annotations

from evol.rules import conversation, duplicates, endpoint, evolution, judgement, response
from evol.rules.rule import Rule

REGISTRY: tuple[Rule, ...] = (
    judgement.NO_INFORMATION_GAIN,
    judgement.JUDGE_UNCLEAR,
    judgement.RANK_UNCLEAR,
    conversation.IGNORED_ANSWER,
    conversation.REPEATED_TURN,
    response.SORRY_SHORT,
    response.REFUSED,
    response.CLARIFICATION,
    evolution.REFUSED,
    evolution.WRAPPED,
    evolution.META_COMMENTARY,
    evolution.NO_FINAL_INSTRUCTION,
    response.STOPWORDS_ONLY,
    evolution.PROMPT_LEAK,
    evolution.LOST_INPUT,
    evolution.EMPTY,
    response.EMPTY,
    evolution.SCRIPT_CHANGED,
    evolution.LANGUAGE_CHANGED,
    response.LANGUAGE_CHANGED,
    evolution.IDENTICAL_TO_PARENT,
    evolution.TRUNCATED,
    response.TRUNCATED,
    endpoint.CONTENT_FILTERED,
    response.ECHOED,
    evolution.TOO_LONG,
    duplicates.DUPLICATE,
)

NAMES: tuple[str, ...] = tuple(name for rule in REGISTRY for name in rule.names)


def table(indent: str = "   ") -> str:
    """The README's table of rules (Markdown), indented to sit in its numbered list."""
    lines = ["| rule | what it catches |", "|---|---|"]
    lines += [f"| {', '.join(f'`{n}`' for n in rule.names)} | {rule.catches} |" for rule in REGISTRY]
    return "\n".join(indent + line for line in lines)
