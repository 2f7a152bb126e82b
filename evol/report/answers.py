"""The report's answer section: candidates per instruction, best and worst scores per round, what answer
evolution gained, and how many preference pairs each margin keeps. Read from records.jsonl alone."""

from __future__ import annotations

import html
import statistics
from collections import defaultdict
from typing import Any

from evol.models import Record
from evol.output.preference import pair_of

MARGINS = (1, 2, 3, 4, 5)


def answer_stats(records: list[Record]) -> dict[str, Any] | None:
    """Figures of the answer stage; None when the run made one plain answer per instruction."""
    ranked = [r for r in records if r.candidates]
    if not ranked:
        return None
    by_round: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    tried = accepted = 0
    gains: list[float] = []
    for rec in ranked:
        cands = rec.candidates
        scores = [c.score for c in cands if c.score is not None]
        row = by_round[rec.round]
        firsts = [c for c in cands if not c.key.startswith("e")]  # the first answers, before any evolution
        row["candidates"].append(len(firsts))
        row["passed"].append(len([c for c in firsts if not c.rule]))
        best = next((c for c in cands if c.best), None)
        if best is not None and best.score is not None:
            row["best"].append(best.score)
        if scores:
            row["worst"].append(min(scores))
        first = [c.score for c in firsts if c.score is not None]
        evolved = [c for c in cands if c.key.startswith("e")]
        if evolved and first:
            current = max(first)
            for c in evolved:  # in the order they were asked for: each one faced the best so far
                tried += 1
                if c.score is not None and c.score > current:
                    accepted += 1
                    current = c.score
            gains.append(current - max(first))
    margins = [p.margin for p in map(pair_of, ranked) if p is not None]
    return {
        "rows": len(ranked),
        "by_round": {n: {k: list(v) for k, v in row.items()} for n, row in sorted(by_round.items())},
        "evolution": {
            "tried": tried,
            "accepted": accepted,
            "mean_gain": round(statistics.mean(gains), 3) if gains else None,
            "instructions": len(gains),
        },
        "pairs_by_margin": {m: sum(1 for x in margins if x >= m) for m in MARGINS},
    }


def _summary(values: list[float]) -> str:
    if not values:
        return "<td class='n'>-</td><td class='n'>-</td><td class='n'>-</td>"
    return (
        f"<td class='n'>{statistics.mean(values):.2f}</td><td class='n'>{statistics.median(values):g}</td>"
        f"<td class='n'>{min(values):g}–{max(values):g}</td>"
    )


def answers_section(stats: dict[str, Any] | None, cost_by_stage: dict[str, float]) -> str:
    """The report's HTML section, or a note that the run made one answer per instruction."""
    if stats is None:
        return (
            "<section id='answers'><h2>Answers</h2><p class='note'>One answer per instruction: run with "
            "<code>--answers N</code> and/or <code>--evolve-answers K</code> for ranked candidates and "
            "preference pairs.</p></section>"
        )
    out = [
        "<section id='answers'><h2>Answers</h2>",
        (
            "<table><tr><th>round</th><th>rows</th><th>candidates / row</th><th>passed / row</th>"
            "<th>best: mean</th><th>median</th><th>range</th><th>worst: mean</th><th>median</th><th>range</th></tr>"
        ),
    ]
    for n, row in stats["by_round"].items():
        label = "0 (seeds)" if n == 0 else str(n)
        out.append(
            f"<tr><td>{label}</td><td class='n'>{len(row['candidates'])}</td>"
            f"<td class='n'>{statistics.mean(row['candidates']):.2f}</td>"
            f"<td class='n'>{statistics.mean(row['passed']):.2f}</td>"
            + _summary(row.get("best", []))
            + _summary(row.get("worst", []))
            + "</tr>"
        )
    out.append("</table>")
    e = stats["evolution"]
    if e["tried"]:
        out.append(
            f"<p>Answer evolution: {e['tried']} improved answers asked for, {e['accepted']} kept because the "
            f"judge scored them higher; the best score of {e['instructions']} instructions rose by "
            f"{e['mean_gain']:.2f} on average.</p>"
        )
    out.append(
        "<table><tr><th>min margin</th><th>preference pairs</th></tr>"
        + "".join(
            f"<tr><td class='n'>{m}</td><td class='n' data-metric='pairs.{m}'>{k}</td></tr>"
            for m, k in stats["pairs_by_margin"].items()
        )
        + "</table>"
    )
    if cost_by_stage:
        out.append(
            "<table><tr><th>stage</th><th>cost (USD)</th></tr>"
            + "".join(f"<tr><td>{html.escape(s)}</td><td class='n'>{v:.4f}</td></tr>" for s, v in cost_by_stage.items())
            + "</table>"
        )
    out.append("</section>")
    return "\n".join(out)
