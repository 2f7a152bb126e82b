"""The report's PNG plots, drawn with matplotlib's object API (no pyplot state)."""

from __future__ import annotations

import io
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from evol.report.stats import OUTCOMES, RoundStats, pct
from evol.rundir.reader import Run, funnel

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

KIND_COLORS = {
    "seeds": "#6b7b8c",
    "candidates": "#7fa7d1",
    "all": "#3f78b5",
    "eliminated": "#e08a3c",
    "duplicate": "#8e6bbf",
    "failed": "#c8453c",
    "kept": "#3f9a5a",
    "skipped": "#9aa4ad",
}


@dataclass
class Plot:
    name: str
    title: str
    png: bytes
    caption: str


STYLE: dict[RcKeyType, Any] = {
    "font.size": 11,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titleweight": "bold",
    "axes.titlesize": 13,
    "figure.dpi": 100,
}


def _subplots(width: float, height: float):
    """A figure of its own, without pyplot: no global figure list, no backend switch in the caller's process."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    return fig, fig.subplots()


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")  # Agg draws it: no display needed
    return buf.getvalue()


def plot_funnel(run: Run) -> bytes:
    steps = funnel(run)
    attempts = run.counts.attempts
    bars: list[tuple[str, float, float, str, str]] = []  # label, left, width, color, note
    for label, kind, n in steps:
        if kind == "candidates":
            bars.append((label, 0, n, KIND_COLORS[kind], str(n)))
    seeds_n = steps[0][2]
    bars.insert(0, ("Seeds", 0, seeds_n, KIND_COLORS["seeds"], str(seeds_n)))
    bars.append(("All candidates", 0, attempts, KIND_COLORS["all"], str(attempts)))
    remaining = attempts
    for label, kind, n in steps:
        if kind in ("eliminated", "duplicate", "failed"):
            remaining -= n
            bars.append((f"− {label} ({kind})", remaining, n, KIND_COLORS[kind], f"−{n} ({pct(n, attempts)})"))
    kept = steps[-1][2]
    bars.append(("Kept", 0, kept, KIND_COLORS["kept"], f"{kept} ({pct(kept, attempts)})"))
    fig, ax = _subplots(9.5, 1.0 + 0.42 * len(bars))
    ys = list(range(len(bars)))[::-1]
    for y, (_label, left, width, color, note) in zip(ys, bars, strict=True):
        ax.barh(y, width, left=left, color=color, height=0.68)
        ax.text(left + width, y, f"  {note}", va="center", fontsize=10)
    ax.set_yticks(ys, [b[0] for b in bars])
    top = max([attempts, seeds_n, 1])
    ax.set_xlim(0, top * 1.22)
    ax.set_xlabel("instructions")
    ax.set_title("Funnel: seeds → candidates → rejections → kept")
    return _png(fig)


def _round_ticks(stats: list[RoundStats], values: Sequence[Sequence[float]]) -> list[str]:
    return [f"{s.label}\nn={len(v)}" for s, v in zip(stats, values, strict=True)]


def plot_boxes(
    stats: list[RoundStats], values: Sequence[Sequence[float]], title: str, ylabel: str, color: str
) -> bytes:
    keep = [(s, v) for s, v in zip(stats, values, strict=True) if v]
    fig, ax = _subplots(9.5, 4.6)
    if not keep:
        _empty(ax, "no data")
    else:
        st, vals = zip(*keep, strict=True)
        # outliers hidden: one 2,000-word instruction would squash every box flat (the tables give min and max)
        bp = ax.boxplot(
            vals,
            tick_labels=_round_ticks(list(st), list(vals)),
            patch_artist=True,
            showmeans=True,
            showfliers=False,
            meanprops={"marker": "D", "markerfacecolor": "white", "markeredgecolor": "black", "markersize": 6},
            medianprops={"color": "black", "linewidth": 1.6},
        )
        for box in bp["boxes"]:
            box.set(facecolor=color, alpha=0.75)
        tops = [max(cap.get_ydata()) for cap in bp["caps"][1::2]]
        for x, (v, top) in enumerate(zip(vals, tops, strict=True), 1):
            ax.annotate(
                f"median {statistics.median(v):g}",
                (x, top),
                textcoords="offset points",
                xytext=(0, 6),
                ha="center",
                fontsize=9,
            )
        low, high = ax.get_ylim()
        ax.set_ylim(low, high + (high - low) * 0.08)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def plot_operations(run: Run) -> bytes:
    by_op = run.manifest.by_operation
    ops = sorted(by_op, key=lambda o: by_op[o].get("attempts", 0))
    fig, ax = _subplots(9.5, 1.2 + 0.5 * max(len(ops), 1))
    if not ops:
        _empty(ax, "no evolutions")
    left = [0] * len(ops)
    for kind in OUTCOMES:
        vals = [by_op[o].get(kind, 0) for o in ops]
        ax.barh(ops, vals, left=left, color=KIND_COLORS[kind], label=kind, height=0.65)
        left = [a + b for a, b in zip(left, vals, strict=True)]
    for y, o in enumerate(ops):
        a = by_op[o].get("attempts", 0)
        ax.text(a, y, f"  {a} tried, {pct(by_op[o].get('kept', 0), a)} kept", va="center", fontsize=10)
    ax.set_xlim(0, max([*left, 1]) * 1.45)
    ax.set_xlabel("candidates")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False, ncols=4)
    ax.set_title("Operation mix and outcome")
    return _png(fig)


def plot_reasons(run: Run) -> bytes:
    rej = [r for r in run.rejected if r.round > 0]
    ops = sorted({r.operation for r in rej})
    rules = [rule for rule, _ in Counter(r.rule for r in rej).most_common()]
    fig, ax = _subplots(9.5, 1.8 + 0.45 * max(len(ops), 2))
    if not rej:
        _empty(ax, "nothing was rejected")
    else:
        cells = Counter((r.operation, r.rule) for r in rej)
        grid = [[cells[(o, rule)] for rule in rules] for o in ops]
        ax.imshow(grid, cmap="Oranges", aspect="auto", vmin=0)
        ax.set_xticks(range(len(rules)), rules, rotation=25, ha="right")
        ax.set_yticks(range(len(ops)), ops)
        peak = max(max(row) for row in grid) or 1
        for i, row in enumerate(grid):
            for j, v in enumerate(row):
                ax.text(
                    j,
                    i,
                    str(v) if v else "·",
                    ha="center",
                    va="center",
                    fontsize=11,
                    color="white" if v > peak * 0.6 else "black",
                )
        ax.spines[:].set_visible(False)
        ax.set_xticks([x - 0.5 for x in range(1, len(rules))], minor=True)
        ax.set_yticks([y - 0.5 for y in range(1, len(ops))], minor=True)
        ax.grid(which="minor", color="white", linewidth=2)
        ax.tick_params(which="minor", length=0)
    ax.set_title("Rejection reasons by operation")
    return _png(fig)


def plot_diversity(stats: list[RoundStats]) -> bytes:
    fig, ax = _subplots(9.5, 4.6)
    stats = [s for s in stats if s.instructions]
    xs = list(range(len(stats)))
    series = [s.diversity() for s in stats]
    for name, style in zip(series[0] if series else [], ("o-", "s-", "^--", "v--", "D:"), strict=False):
        ax.plot(xs, [d[name] for d in series], style, label=name, linewidth=2, markersize=7)
    ax.set_xticks(xs, [f"{s.label}\nn={len(s.instructions)}" for s in stats])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share (1 = all distinct)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.set_title("Lexical diversity of instructions per round")
    return _png(fig)


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=13, color="#666")
    ax.set_xticks([])
    ax.set_yticks([])


def make_plots(run: Run, stats: list[RoundStats]) -> list[Plot]:
    plots = [
        Plot(
            "funnel",
            "Funnel",
            plot_funnel(run),
            "Every seed is tried once per round. Each rejection rule takes its bite out of the candidates; what is left is kept.",
        ),
        Plot(
            "instruction_length",
            "Instruction length",
            plot_boxes(stats, [s.words for s in stats], "Instruction length per round (kept)", "words", "#7fa7d1"),
            "Kept instructions per round; the evolution should make them longer round after round. "
            "Boxes span the middle half, the line is the median, the diamond the mean; outliers are left out "
            "(the table gives min and max).",
        ),
        Plot(
            "operations",
            "Operation mix",
            plot_operations(run),
            "How often each evolution operation was chosen, and what became of its candidates.",
        ),
        Plot(
            "rejections",
            "Rejection reasons by operation",
            plot_reasons(run),
            "Which rule rejected the candidates of which operation: a dark cell is an operation the model handles badly.",
        ),
        Plot(
            "response_length",
            "Response length",
            plot_boxes(stats, [s.output_words for s in stats], "Response length per round (kept)", "words", "#8fc79a"),
            "Words in the answers that went into the dataset.",
        ),
        Plot(
            "diversity",
            "Lexical diversity",
            plot_diversity(stats),
            "distinct-n: distinct n-grams over all n-grams of a round's instructions (a smaller round scores higher by nature). "
            "Unique first verbs / nouns: the share of instructions opening with a verb (and object) no other one in the round uses; "
            "a position heuristic, not a parser.",
        ),
    ]
    if any(n > 1 for s in stats for n in s.turns):  # a run over conversations (--turns, or conversation seeds)
        plots.append(
            Plot(
                "turns",
                "Turns per conversation",
                plot_boxes(
                    stats, [s.turns for s in stats], "User turns per conversation per round (kept)", "turns", "#c9a0dc"
                ),
                "How long the kept conversations are: a follow_up evolution adds a user turn, the others rewrite the last one.",
            )
        )
    if any(s.scores for s in stats):
        plots.append(
            Plot(
                "difficulty",
                "Complexity",
                plot_boxes(
                    stats, [s.scores for s in stats], "LLM-judged complexity per round (1-10)", "complexity", "#e0a96d"
                ),
                "Scores from python -m evol score: the evolved rounds should be judged more complex than the seeds.",
            )
        )
    if any(s.quality for s in stats):
        plots.append(
            Plot(
                "quality",
                "Quality",
                plot_boxes(
                    stats,
                    [s.quality for s in stats],
                    "LLM-judged answer quality per round (1-10)",
                    "quality",
                    "#8fc79a",
                ),
                "The judge's rating of each kept answer: a round whose harder instructions get worse answers shows here.",
            )
        )
    return plots
