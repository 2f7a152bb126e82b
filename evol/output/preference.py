"""Preference pairs from ranked candidate answers: ``dpo`` and ``preference-chat`` exports for TRL.

A pair is the best candidate (the row's output) against the worst candidate the judge scored, kept only
where the scores differ by at least ``--min-margin``: a small margin between two pointwise scores is mostly
the judge's noise, and DPO learns from the difference it is shown.

Shapes, as TRL's dataset formats page lists them for preference data (https://huggingface.co/docs/trl/dataset_formats):
``dpo`` is the standard form, ``{"prompt": str, "chosen": str, "rejected": str}``; ``preference-chat`` the
conversational one with an explicit prompt, ``{"prompt": [messages], "chosen": [assistant message],
"rejected": [assistant message]}``: the prompt is every turn the candidates were answered after (the conversation's
own system message, else ``--system``, its earlier turns, the instruction). ``dpo``'s prompt is one string, so a
conversation's row is left out of it, with the reason counted: its answers refer to turns the string would drop.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from evol.errors import ConfigError
from evol.models import Record, chat_turns, user_turns

DEFAULT_MIN_MARGIN = 1.0


@dataclass(frozen=True)
class Pair:
    chosen: str
    rejected: str
    chosen_score: float
    rejected_score: float
    chosen_model: str
    rejected_model: str

    @property
    def margin(self) -> float:
        return self.chosen_score - self.rejected_score


def pair_of(record: Record) -> Pair | None:
    """The record's (best, worst scored) candidates; None when it has fewer than two scored candidates."""
    cands = record.candidates
    scored = [(c, c.score) for c in cands if c.score is not None and not c.rule]
    best = next((c for c in cands if c.best), None)
    if best is None or best.score is None or len(scored) < 2:
        return None
    # the lowest score; of equals the latest, so an evolution the judge did not prefer counts before its source
    worst, worst_score = min(reversed(scored), key=lambda cs: cs[1])
    if worst is best or worst.key == best.key:
        return None
    return Pair(
        chosen=best.text,
        rejected=worst.text,
        chosen_score=float(best.score),
        rejected_score=float(worst_score),
        chosen_model=best.model,
        rejected_model=worst.model,
    )


def check_margin(min_margin: float) -> None:
    if not 0 < min_margin <= 9:
        raise ConfigError(f"--min-margin must be above 0 and at most 9 (scores run 1-10); got {min_margin:g}.")


#: why a conversation's row is not in a ``dpo`` export
CONVERSATION = "a conversation (dpo's prompt is one string; --format preference-chat keeps its turns)"


def pairs_for(
    rows: list, records: dict[tuple[str, str], Record], min_margin: float, fmt: str
) -> tuple[list, dict, Counter]:
    """The rows that make a pair, their pairs by (run id, row id), and why the others were left out."""
    check_margin(min_margin)
    kept, pairs = [], {}
    dropped: Counter[str] = Counter()  # reason -> rows left out
    for row in rows:
        if fmt == "dpo" and user_turns(row.history):
            dropped[CONVERSATION] += 1
            continue
        pair = pair_of(records[row.run_id, row.id])
        if pair is None:
            dropped["fewer than two ranked candidates"] += 1
        elif pair.margin < min_margin:
            dropped[f"score margin under --min-margin {min_margin:g}"] += 1
        else:
            kept.append(row)
            pairs[row.run_id, row.id] = pair
    if not kept:
        raise ConfigError(
            "No row has a preference pair ("
            + ", ".join(f"{n} {why}" for why, n in dropped.most_common())
            + (
                "); export them with --format preference-chat."
                if set(dropped) == {CONVERSATION}
                else "); run with --answers 2 or more (or --evolve-answers), or lower --min-margin."
            )
        )
    return kept, pairs, dropped


def to_records(rows: list, pairs: dict, fmt: str, system: str | None = None) -> list[dict[str, Any]]:
    """The rows in TRL's preference shape: standard (``dpo``) or conversational (``preference-chat``)."""
    out = []
    for row in rows:
        p = pairs[row.run_id, row.id]
        if fmt == "dpo":
            out.append({"prompt": row.instruction, "chosen": p.chosen, "rejected": p.rejected})
        else:
            out.append(
                {
                    "prompt": [t.model_dump() for t in chat_turns(row.history, row.instruction, system)],
                    "chosen": [{"role": "assistant", "content": p.chosen}],
                    "rejected": [{"role": "assistant", "content": p.rejected}],
                }
            )
    return out
