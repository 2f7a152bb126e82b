"""One self-contained HTML page (and its PNG plots) that shows whether a run was good.

Everything is computed from the run directory alone: the manifest for the counts, records.jsonl and
rejected.jsonl for texts, scores.jsonl when ``python -m evol score`` ran, and the seed file when it is
still where the run read it (for the round-0 baseline).
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import os
import re
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from .errors import EvolError
from .export import Run, funnel, load_run, load_scores, word_count

log = logging.getLogger("evol")

REPORT_DIR = "report"
KIND_COLORS = {"seeds": "#6b7b8c", "candidates": "#7fa7d1", "all": "#3f78b5", "eliminated": "#e08a3c",
               "duplicate": "#8e6bbf", "failed": "#c8453c", "kept": "#3f9a5a", "skipped": "#9aa4ad"}
OUTCOMES = ("kept", "eliminated", "duplicate", "failed")

# --------------------------------------------------------------------------- lexical statistics

_TOKEN = re.compile(r"\w+(?:'\w+)?")
# politeness and auxiliaries before the real verb: "Could you please explain ..." opens with "explain"
_LEAD = frozenset("please kindly can could would will you i we now also then so and hey hi ok okay let's let us me "
                  "help assist".split())
# what sits between the verb and its object: "Write a short poem" has the object "short" by this rule, which is
# crude but stable, and the share of distinct openings is what the plot compares, not the words themselves
_BETWEEN = frozenset("a an the me us my our your his her their its this that these those some any one two three few "
                     "several of to for in on with about into from by as all each every is are was were be do does "
                     "did what how which".split())


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.casefold())


def opening(text: str) -> tuple[str | None, str | None]:
    """(first verb, first object word) by position, a dependency-free stand-in for the paper's verb-noun parse."""
    return _opening(tokens(text[:400]))


def _opening(ws: list[str]) -> tuple[str | None, str | None]:
    i = 0
    while i < len(ws) and ws[i] in _LEAD:
        i += 1
    verb = ws[i] if i < len(ws) else None
    j = i + 1
    while j < len(ws) and ws[j] in _BETWEEN:
        j += 1
    return verb, (ws[j] if j < len(ws) else None)


def distinct_n(texts: list[str], n: int) -> float:
    """Distinct n-grams over all n-grams of the texts (Li et al. 2016); 0 when there are none."""
    return _distinct([tokens(t) for t in texts], n)


def _distinct(token_lists: list[list[str]], n: int) -> float:
    seen, total = set(), 0
    for t in token_lists:
        grams = t if n == 1 else list(zip(*(t[i:] for i in range(n))))
        seen.update(grams)
        total += len(grams)
    return len(seen) / total if total else 0.0


@dataclass
class RoundStats:
    """What one round (0 = the seeds) contributes to the plots."""

    round: int
    instructions: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)

    @property
    def label(self) -> str:
        return "seeds" if self.round == 0 else f"round {self.round}"

    @cached_property
    def words(self) -> list[int]:
        return [word_count(t) for t in self.instructions]

    @cached_property
    def output_words(self) -> list[int]:
        return [word_count(t) for t in self.outputs]

    @cached_property
    def _openings(self) -> list[tuple[str | None, str | None]]:
        return [opening(t) for t in self.instructions]

    @cached_property
    def _diversity(self) -> dict[str, float]:
        n = len(self.instructions)
        token_lists = [tokens(t) for t in self.instructions]  # once per round: the costly part on big runs
        opens = self._openings

        def share(xs: list) -> float:
            return len({x for x in xs if x}) / n if n else 0.0

        return {
            "distinct-1": _distinct(token_lists, 1),
            "distinct-2": _distinct(token_lists, 2),
            "unique first verbs": share([v for v, _ in opens]),
            "unique first nouns": share([o for _, o in opens]),
            "unique verb-noun pairs": share([(v, o) if v and o else None for v, o in opens]),
        }

    def diversity(self) -> dict[str, float]:
        """Computed once, after the round's instructions are all in."""
        return self._diversity

    def top_openings(self, k: int = 5) -> list[tuple[str, int]]:
        return Counter(v for v, _ in self._openings if v).most_common(k)


def run_seeds(run: Run) -> list[tuple[str, str]]:
    """(id, instruction) of the run's seeds, re-read from its seed file; empty when that file moved or changed."""
    from .seeds import load_seeds

    cfg = run.manifest.get("config") or {}
    try:
        seedset = load_seeds(Path(cfg["seeds"]), instruction_field=cfg.get("instruction_field"),
                             input_field=cfg.get("input_field"), limit=cfg.get("limit"),
                             max_chars=cfg.get("max_instruction_chars"))
    except (EvolError, OSError, KeyError, TypeError, ValueError):
        return []
    seeds = [(s.id, s.instruction) for s in seedset.seeds]
    used = {r["seed_id"] for r in [*run.records, *run.rejected] if r.get("round", 0) > 0}
    if len(seeds) != run.counts.get("seeds") or not used <= {sid for sid, _ in seeds}:
        return []  # not the file this run read any more: no baseline beats a wrong one
    return seeds


def round_stats(run: Run, seeds: list[tuple[str, str]], scores: dict[str, float]) -> list[RoundStats]:
    rounds: dict[int, RoundStats] = {}
    seed_records = [r for r in run.records if r["round"] == 0]
    if seeds or seed_records:
        r0 = rounds[0] = RoundStats(0)
        r0.instructions = [text for _, text in seeds] or [r["instruction"] for r in seed_records]
        r0.outputs = [r["output"] for r in seed_records]
        r0.scores = [scores[sid] for sid, _ in seeds if sid in scores] or [scores[r["id"]] for r in seed_records if r["id"] in scores]
    for rec in run.records:
        if rec["round"] == 0:
            continue
        st = rounds.setdefault(rec["round"], RoundStats(rec["round"]))
        st.instructions.append(rec["instruction"])
        st.outputs.append(rec["output"])
        if rec["id"] in scores:
            st.scores.append(scores[rec["id"]])
    return [rounds[k] for k in sorted(rounds)]


# --------------------------------------------------------------------------- plots

STYLE = {"font.size": 11, "axes.spines.top": False, "axes.spines.right": False, "axes.titleweight": "bold",
         "axes.titlesize": 13, "figure.dpi": 100}


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
    attempts = int(run.counts.get("attempts", 0))
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
            bars.append((f"− {label} ({kind})", remaining, n, KIND_COLORS[kind], f"−{n} ({_pct(n, attempts)})"))
    kept = steps[-1][2]
    bars.append(("Kept", 0, kept, KIND_COLORS["kept"], f"{kept} ({_pct(kept, attempts)})"))
    fig, ax = _subplots(9.5, 1.0 + 0.42 * len(bars))
    ys = list(range(len(bars)))[::-1]
    for y, (label, left, width, color, note) in zip(ys, bars):
        ax.barh(y, width, left=left, color=color, height=0.68)
        ax.text(left + width, y, f"  {note}", va="center", fontsize=10)
    ax.set_yticks(ys, [b[0] for b in bars])
    top = max([attempts, seeds_n, 1])
    ax.set_xlim(0, top * 1.22)
    ax.set_xlabel("instructions")
    ax.set_title("Funnel: seeds → candidates → rejections → kept")
    return _png(fig)


def _round_ticks(stats: list[RoundStats], values: list[list[float]]) -> list[str]:
    return [f"{s.label}\nn={len(v)}" for s, v in zip(stats, values)]


def plot_boxes(stats: list[RoundStats], values: list[list[float]], title: str, ylabel: str, color: str) -> bytes:
    keep = [(s, v) for s, v in zip(stats, values) if v]
    fig, ax = _subplots(9.5, 4.6)
    if not keep:
        _empty(ax, "no data")
    else:
        st, vals = zip(*keep)
        # outliers hidden: one 2,000-word instruction would squash every box flat (the tables give min and max)
        bp = ax.boxplot(vals, tick_labels=_round_ticks(list(st), list(vals)), patch_artist=True, showmeans=True,
                        showfliers=False,
                        meanprops={"marker": "D", "markerfacecolor": "white", "markeredgecolor": "black", "markersize": 6},
                        medianprops={"color": "black", "linewidth": 1.6})
        for box in bp["boxes"]:
            box.set(facecolor=color, alpha=0.75)
        tops = [max(cap.get_ydata()) for cap in bp["caps"][1::2]]
        for x, (v, top) in enumerate(zip(vals, tops), 1):
            ax.annotate(f"median {statistics.median(v):g}", (x, top), textcoords="offset points", xytext=(0, 6),
                        ha="center", fontsize=9)
        low, high = ax.get_ylim()
        ax.set_ylim(low, high + (high - low) * 0.08)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def plot_operations(run: Run) -> bytes:
    by_op = run.manifest.get("by_operation") or {}
    ops = sorted(by_op, key=lambda o: by_op[o].get("attempts", 0))
    fig, ax = _subplots(9.5, 1.2 + 0.5 * max(len(ops), 1))
    if not ops:
        _empty(ax, "no evolutions")
    left = [0] * len(ops)
    for kind in OUTCOMES:
        vals = [by_op[o].get(kind, 0) for o in ops]
        ax.barh(ops, vals, left=left, color=KIND_COLORS[kind], label=kind, height=0.65)
        left = [a + b for a, b in zip(left, vals)]
    for y, o in enumerate(ops):
        a = by_op[o].get("attempts", 0)
        ax.text(a, y, f"  {a} tried, {_pct(by_op[o].get('kept', 0), a)} kept", va="center", fontsize=10)
    ax.set_xlim(0, max(left + [1]) * 1.45)
    ax.set_xlabel("candidates")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False, ncols=4)
    ax.set_title("Operation mix and outcome")
    return _png(fig)


def plot_reasons(run: Run) -> bytes:
    rej = [r for r in run.rejected if r.get("round", 0) > 0]
    ops = sorted({r["operation"] for r in rej})
    rules = [rule for rule, _ in Counter(r["rule"] for r in rej).most_common()]
    fig, ax = _subplots(9.5, 1.8 + 0.45 * max(len(ops), 2))
    if not rej:
        _empty(ax, "nothing was rejected")
    else:
        cells = Counter((r["operation"], r["rule"]) for r in rej)
        grid = [[cells[(o, rule)] for rule in rules] for o in ops]
        ax.imshow(grid, cmap="Oranges", aspect="auto", vmin=0)
        ax.set_xticks(range(len(rules)), rules, rotation=25, ha="right")
        ax.set_yticks(range(len(ops)), ops)
        peak = max(max(row) for row in grid) or 1
        for i, row in enumerate(grid):
            for j, v in enumerate(row):
                ax.text(j, i, str(v) if v else "·", ha="center", va="center", fontsize=11,
                        color="white" if v > peak * 0.6 else "black")
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
    for (name, style) in zip(series[0] if series else [], ("o-", "s-", "^--", "v--", "D:")):
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


def _pct(n: float, d: float) -> str:
    return f"{100 * n / d:.0f}%" if d else "–"


# --------------------------------------------------------------------------- the page

@dataclass
class Plot:
    name: str
    title: str
    png: bytes
    caption: str


def build_report(run_dir: Path, out: Path | None = None) -> Path:
    """Write ``report.html`` and the PNGs into ``out`` (default RUN_DIR/report); returns the HTML's path."""
    import matplotlib  # here, not at the top: the CLI and ``score`` start without it

    run = load_run(run_dir)
    out = Path(out) if out else Path(run_dir) / REPORT_DIR
    seeds = run_seeds(run)
    scores = load_scores(run.path)
    stats = round_stats(run, seeds, scores)
    with matplotlib.rc_context(STYLE):
        plots = make_plots(run, stats)
    out.mkdir(parents=True, exist_ok=True)
    for p in plots:
        _write_bytes(out / f"{p.name}.png", p.png)
    page = render_html(run, stats, plots, seeds, scores)
    _write_bytes(out / "report.html", page.encode("utf-8"))
    log.info("report: %s (%d plots)", out / "report.html", len(plots))
    return out / "report.html"


def make_plots(run: Run, stats: list[RoundStats]) -> list[Plot]:
    plots = [
        Plot("funnel", "Funnel", plot_funnel(run),
             "Every seed is tried once per round. Each rejection rule takes its bite out of the candidates; what is left is kept."),
        Plot("instruction_length", "Instruction length", plot_boxes(
            stats, [s.words for s in stats], "Instruction length per round (kept)", "words", "#7fa7d1"),
             "Kept instructions per round; the evolution should make them longer round after round. "
             "Boxes span the middle half, the line is the median, the diamond the mean; outliers are left out "
             "(the table gives min and max)."),
        Plot("operations", "Operation mix", plot_operations(run),
             "How often each evolution operation was chosen, and what became of its candidates."),
        Plot("rejections", "Rejection reasons by operation", plot_reasons(run),
             "Which rule rejected the candidates of which operation: a dark cell is an operation the model handles badly."),
        Plot("response_length", "Response length", plot_boxes(
            stats, [s.output_words for s in stats], "Response length per round (kept)", "words", "#8fc79a"),
             "Words in the answers that went into the dataset."),
        Plot("diversity", "Lexical diversity", plot_diversity(stats),
             "distinct-n: distinct n-grams over all n-grams of a round's instructions (a smaller round scores higher by nature). "
             "Unique first verbs / nouns: the share of instructions opening with a verb (and object) no other one in the round uses; "
             "a position heuristic, not a parser."),
    ]
    if any(s.scores for s in stats):
        plots.append(Plot("difficulty", "Difficulty", plot_boxes(
            stats, [s.scores for s in stats], "LLM-judged difficulty per round (1-10)", "difficulty", "#e0a96d"),
            "Scores from python -m evol score: the evolved rounds should be judged harder than the seeds."))
    return plots


def _write_bytes(path: Path, data: bytes) -> None:
    """Binary sibling of rundir.atomic_write: whole file or none."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _num(key: str, value: Any) -> str:
    """A table cell whose number a test (or a script) can find by its manifest key."""
    return f'<td class="n" data-metric="{_e(key)}">{_e(value)}</td>'


def _cut(text: str | None, n: int) -> str:
    text = text or ""
    return text if len(text) <= n else text[:n].rstrip() + " …"


def findings(run: Run, stats: list[RoundStats]) -> list[tuple[str, str]]:
    """(level, sentence) worth reading first: ok, warn or bad."""
    c, out = run.counts, []
    attempts, kept = c.get("attempts", 0), c.get("kept", 0)
    status = run.manifest.get("status")
    if status != "complete":
        out.append(("bad", f"The run is {status}, not complete{': ' + run.manifest['reason'] if run.manifest.get('reason') else ''}."))
    if not c.get("balanced", True):
        out.append(("bad", "The counts do not add up (attempts ≠ kept + eliminated + duplicates + failed)."))
    if attempts:
        rate = kept / attempts
        level = "ok" if rate >= 0.5 else "warn" if rate >= 0.2 else "bad"
        out.append((level, f"{kept} of {attempts} candidates kept ({rate:.0%})."))
        for label, kind, n in funnel(run):
            if kind in ("eliminated", "duplicate") and n / attempts >= 0.25:
                out.append(("warn", f"Rule {label} removed {n} candidates ({n / attempts:.0%}); look at its examples below."))
    judge = run.manifest.get("judge") or {}
    if judge.get("unclear"):
        twice = judge.get("unclear_after_retry", 0)
        level = "warn" if judge["unclear"] >= 0.05 * judge.get("judged", 0) else "ok"
        out.append((level, (f"The judge gave no readable verdict for {judge['unclear']} of {judge.get('judged', 0)} "
                            f"evolutions, {twice} of them again on the retry (rule judge_unclear); its answers are in "
                            f"the 'judge' field of records.jsonl and rejected.jsonl.")))
    if c.get("failed"):
        out.append(("warn", f"{c['failed']} candidates failed on backend errors; running the same command again retries them."))
    evolved = [s for s in stats if s.round > 0 and s.words]
    first = next((s for s in stats if s.words), None)
    if first and evolved and evolved[-1] is not first:
        a, b = statistics.median(first.words), statistics.median(evolved[-1].words)
        level = "ok" if b > a else "warn"
        out.append((level, f"Median instruction length went from {a:g} words ({first.label}) to {b:g} ({evolved[-1].label})."))
    scored = [s for s in stats if s.scores]
    if len(scored) >= 2:
        a, b = statistics.mean(scored[0].scores), statistics.mean(scored[-1].scores)
        out.append(("ok" if b > a else "warn", f"Mean judged difficulty went from {a:.1f} ({scored[0].label}) to {b:.1f} ({scored[-1].label})."))
    return out


def render_html(run: Run, stats: list[RoundStats], plots: list[Plot], seeds: list[tuple[str, str]],
                scores: dict[str, float]) -> str:
    m, c = run.manifest, run.counts
    usage = m.get("usage") or {}
    total = usage.get("tokens_total") or {}
    calls = sum((usage.get("calls") or {}).values())
    cached = sum((usage.get("calls_from_cache") or {}).values())
    backend = m.get("backend") or {}
    parts: list[str] = []
    add = parts.append

    add(f"<header><h1>Run report <code>{_e(run.run_id)}</code></h1>"
        f"<p class='sub'>status <b class='st-{_e(m.get('status'))}'>{_e(m.get('status'))}</b> · profile <b>{_e(run.profile)}</b> · "
        f"started {_e(m.get('started', '?'))} · {_e(m.get('seconds', '?'))} s · folder <code>{_e(m.get('out', run.path))}</code></p></header>")
    nav = ["summary", "funnel"] + [p.name for p in plots if p.name != "funnel"] + ["examples", "setup"]
    add("<nav>" + " ".join(f"<a href='#{n}'>{_e(n.replace('_', ' '))}</a>" for n in nav) + "</nav>")

    # --- summary
    cards = [("seeds", "seeds"), ("rounds_done", "rounds"), ("attempts", "candidates"), ("kept", "kept"),
             ("eliminated", "eliminated"), ("duplicate", "duplicates"), ("failed", "failed"), ("dataset_rows", "dataset rows")]
    add("<section id='summary'><h2>Summary</h2><div class='cards'>")
    for key, label in cards:
        add(f"<div class='card k-{key}'><div class='v' data-metric='counts.{key}'>{_e(c.get(key, 0))}</div><div class='l'>{label}</div></div>")
    add("</div><div class='two'><ul class='findings'>")
    for level, text in findings(run, stats):
        add(f"<li class='{level}'>{_e(text)}</li>")
    add("</ul><table class='kv'>")
    for key in ("seeds_skipped", "seed_records", "seed_rejections", "seeds_with_kept_descendants",
                "seeds_without_kept_descendants", "judge_unclear", "balanced"):
        if key in c:
            value = ("yes" if c[key] else "no") if isinstance(c[key], bool) else c[key]
            add(f"<tr><th>{_e(key.replace('_', ' '))}</th>{_num('counts.' + key, value)}</tr>")
    judge = m.get("judge") or {}
    for key, label in (("judged", "evolutions judged"), ("resolved_by_retry", "judge unclear, resolved by the retry"),
                       ("unclear_after_retry", "judge unclear twice")):
        if key in judge:
            add(f"<tr><th>{_e(label)}</th>{_num('judge.' + key, judge[key])}</tr>")
    add(f"<tr><th>LLM calls (from cache)</th><td class='n'>{calls} ({cached})</td></tr>")
    add(f"<tr><th>tokens prompt / completion</th><td class='n' data-metric='usage.tokens_total'>"
        f"{total.get('prompt_tokens', 0):,} / {total.get('completion_tokens', 0):,}</td></tr>")
    add("</table></div></section>")

    # --- funnel and tables
    add("<section id='funnel'><h2>Funnel</h2>")
    add(_figure(plots[0]))
    add("<div class='two'><div><h3>By round</h3><table><tr><th>round</th><th>candidates</th>"
        + "".join(f"<th>{k}</th>" for k in OUTCOMES) + "<th>kept %</th></tr>")
    for n, row in sorted((m.get("by_round") or {}).items(), key=lambda kv: int(kv[0])):
        add(f"<tr><td>{_e(n)}</td>{_num(f'by_round.{n}.attempts', row.get('attempts', 0))}"
            + "".join(_num(f"by_round.{n}.{k}", row.get(k, 0)) for k in OUTCOMES)
            + f"<td class='n'>{_pct(row.get('kept', 0), row.get('attempts', 0))}</td></tr>")
    add("</table></div><div><h3>By rule</h3><table><tr><th>rule</th><th>count</th></tr>")
    for rule, n in sorted((m.get("by_rule") or {}).items(), key=lambda kv: -kv[1]):
        add(f"<tr><td>{_e(rule)}</td>{_num(f'by_rule.{rule}', n)}</tr>")
    if not m.get("by_rule"):
        add("<tr><td colspan='2'>nothing rejected</td></tr>")
    add("</table></div></div></section>")

    by_plot = {p.name: p for p in plots}
    # --- lengths
    add("<section id='instruction_length'><h2>Instruction length</h2>" + _figure(by_plot["instruction_length"]))
    add(_stats_table(stats, "instruction words", lambda s: s.words))
    if not seeds and not any(s.round == 0 for s in stats):
        add("<p class='note'>The seed file is no longer where the run read it, so there is no seed baseline.</p>")
    add("</section>")

    # --- operations
    add("<section id='operations'><h2>Operation mix</h2>" + _figure(by_plot["operations"]))
    add("<table><tr><th>operation</th><th>weight</th><th>candidates</th>" + "".join(f"<th>{k}</th>" for k in OUTCOMES) + "</tr>")
    weights = (m.get("profile") or {}).get("operations", {})
    for op, row in sorted((m.get("by_operation") or {}).items()):
        add(f"<tr><td>{_e(op)}</td><td class='n'>{_e(weights.get(op, ''))}</td>{_num(f'by_operation.{op}.attempts', row.get('attempts', 0))}"
            + "".join(_num(f"by_operation.{op}.{k}", row.get(k, 0)) for k in OUTCOMES) + "</tr>")
    add("</table></section>")
    add("<section id='rejections'><h2>Rejection reasons by operation</h2>" + _figure(by_plot["rejections"]) + "</section>")
    add("<section id='response_length'><h2>Response length</h2>" + _figure(by_plot["response_length"]))
    add(_stats_table(stats, "response words", lambda s: s.output_words) + "</section>")

    # --- diversity
    add("<section id='diversity'><h2>Lexical diversity</h2>" + _figure(by_plot["diversity"]))
    rows = [s for s in stats if s.instructions]
    names = list(rows[0].diversity()) if rows else []
    add("<table><tr><th>round</th><th>n</th>" + "".join(f"<th>{_e(k)}</th>" for k in names) + "<th>most common openings</th></tr>")
    for s in rows:
        d = s.diversity()
        tops = ", ".join(f"{w} ({n})" for w, n in s.top_openings())
        add(f"<tr><td>{_e(s.label)}</td><td class='n'>{len(s.instructions)}</td>"
            + "".join(f"<td class='n'>{d[k]:.2f}</td>" for k in names) + f"<td>{_e(tops)}</td></tr>")
    add("</table></section>")

    # --- difficulty
    if "difficulty" in by_plot:
        add("<section id='difficulty'><h2>Difficulty</h2>" + _figure(by_plot["difficulty"]))
        add(_stats_table(stats, "difficulty", lambda s: s.scores) + "</section>")
    else:
        add("<section id='difficulty'><h2>Difficulty</h2><p class='note'>Not scored yet: "
            "<code>python -m evol score RUN_DIR</code> has an LLM judge rate each kept instruction 1-10, "
            "then run the report again.</p></section>")

    add(_examples(run, seeds))
    add(_setup(run, backend))
    return PAGE.format(title=_e(f"evol report {run.run_id}"), body="\n".join(parts),
                       generated=_e(time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())))


def _figure(p: Plot) -> str:
    data = base64.b64encode(p.png).decode("ascii")
    return (f"<figure><img alt='{_e(p.title)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{_e(p.caption)} <a href='{_e(p.name)}.png'>PNG</a></figcaption></figure>")


def _stats_table(stats: list[RoundStats], what: str, get) -> str:
    rows = ["<table><tr><th>round</th><th>n</th><th>mean</th><th>median</th><th>min</th><th>max</th></tr>"]
    for s in stats:
        v = get(s)
        if v:
            rows.append(f"<tr><td>{_e(s.label)}</td><td class='n'>{len(v)}</td><td class='n'>{statistics.mean(v):.1f}</td>"
                        f"<td class='n'>{statistics.median(v):g}</td><td class='n'>{min(v):g}</td><td class='n'>{max(v):g}</td></tr>")
    rows.append("</table>")
    return f"<p class='tcap'>{_e(what)}</p>" + "".join(rows)


def _examples(run: Run, seeds: list[tuple[str, str]]) -> str:
    """The deepest lineages (seed → each kept evolution) and one rejection per rule, texts cut short."""
    seed_text = dict(seeds) | {r["id"]: r["instruction"] for r in run.records if r["round"] == 0}
    by_id = {r["id"]: r for r in run.records}
    parents = {r.get("parent_id") for r in run.records}
    leaves = [r for r in run.records if r["round"] > 0 and r["id"] not in parents]
    chains = []
    for leaf in leaves:
        chain, node = [], leaf
        while node is not None:
            chain.append(node)
            node = by_id.get(node.get("parent_id")) if node["round"] > 0 else None
        chains.append(chain[::-1])
    chains.sort(key=lambda ch: (-len(ch), ch[0]["seed_index"]))
    out = ["<section id='examples'><h2>Examples</h2><h3>Lineages</h3>"]
    for chain in chains[:3]:
        sid = chain[0]["seed_id"]
        out.append("<div class='lineage'>")
        if sid in seed_text and chain[0]["round"] > 0:
            out.append(f"<div class='step'><span class='tag'>seed</span> {_e(_cut(seed_text[sid], 400))}</div>")
        for r in chain:
            tag = "seed" if r["round"] == 0 else f"round {r['round']} · {r['operation']}"
            out.append(f"<div class='step'><span class='tag'>{_e(tag)}</span> {_e(_cut(r['instruction'], 700))}</div>")
        out.append(f"<div class='answer'><span class='tag'>answer</span> {_e(_cut(chain[-1]['output'], 500))}</div></div>")
    if not chains:
        out.append("<p class='note'>No evolution was kept.</p>")
    out.append("<h3>One rejection per rule</h3><table class='ex'><tr><th>rule</th><th>where</th><th>instruction / detail</th></tr>")
    seen = set()
    for r in run.rejected:
        if r["rule"] in seen:
            continue
        seen.add(r["rule"])
        where = f"{r['kind']}, round {r.get('round', 0)}, {r.get('operation', '')}"
        body = _e(_cut(r.get("instruction") or "", 300))
        if r.get("output"):
            body += f"<br><span class='tag'>answer</span> {_e(_cut(r['output'], 200))}"
        if r.get("detail"):
            body += f"<br><span class='detail'>{_e(_cut(r['detail'], 200))}</span>"
        out.append(f"<tr><td>{_e(r['rule'])}</td><td>{_e(where)}</td><td>{body}</td></tr>")
    if not seen:
        out.append("<tr><td colspan='3'>nothing rejected</td></tr>")
    out.append("</table></section>")
    return "".join(out)


def _setup(run: Run, backend: dict[str, Any]) -> str:
    m = run.manifest
    rows = [("evolve model", backend.get("evolve_model")), ("response model", backend.get("response_model")),
            ("judge model", backend.get("judge_model")), ("seed files", ", ".join(m.get("seed_files", []))),
            ("versions", ", ".join(f"{k} {v}" for k, v in (m.get("versions") or {}).items()))]
    out = ["<section id='setup'><h2>What made it</h2><table class='kv'>"]
    out += [f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows]
    out.append("</table><h3>Prompt templates</h3><table class='kv'>")
    out += [f"<tr><th>{_e(k)}</th><td><code title='{_e(v)}'>{_e(v[:16])}…</code></td></tr>"
            for k, v in (m.get("prompt_sha256") or {}).items()]
    out.append("</table><details><summary>Full configuration</summary><pre>")
    out.append(_e(json.dumps(m.get("config") or {}, indent=2)))
    out.append("</pre></details></section>")
    return "".join(out)


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
:root {{ --ink:#1d2733; --mute:#5b6776; --line:#dde3ea; --bg:#f6f8fa; }}
* {{ box-sizing: border-box; }}
body {{ margin:0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color:var(--ink); background:#fff; }}
header, nav, section, footer {{ max-width: 1080px; margin: 0 auto; padding: 0 24px; }}
header {{ padding-top: 20px; }}
h1 {{ font-size: 1.6rem; margin: 0 0 4px; }} h1 code {{ font-size: 1.3rem; }}
h2 {{ font-size: 1.3rem; margin: 28px 0 10px; padding-top: 12px; border-top: 1px solid var(--line); }}
h3 {{ font-size: 1.05rem; margin: 16px 0 6px; }}
.sub {{ color: var(--mute); margin: 0; }}
.st-complete {{ color: #2e7d46; }} .st-running, .st-stopped {{ color: #b5591b; }}
nav {{ position: sticky; top: 0; background: rgba(255,255,255,.96); padding-top: 8px; padding-bottom: 8px; border-bottom: 1px solid var(--line); z-index: 1; }}
nav a {{ margin-right: 14px; color: #2f5f98; text-decoration: none; font-size: .95rem; white-space: nowrap; }}
.cards {{ display: grid; grid-template-columns: repeat(auto-fit, minmax(110px, 1fr)); gap: 10px; }}
.card {{ background: var(--bg); border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; }}
.card .v {{ font-size: 1.6rem; font-weight: 700; font-variant-numeric: tabular-nums; }}
.card .l {{ color: var(--mute); font-size: .9rem; }}
.k-kept .v {{ color: #2e7d46; }} .k-eliminated .v {{ color: #b5591b; }} .k-duplicate .v {{ color: #6a4c9c; }} .k-failed .v {{ color: #b3362e; }}
.findings {{ list-style: none; padding: 0; margin: 14px 0; }}
.findings li {{ padding: 6px 10px; margin: 4px 0; border-left: 4px solid; background: var(--bg); }}
.findings .ok {{ border-color: #3f9a5a; }} .findings .warn {{ border-color: #e08a3c; }} .findings .bad {{ border-color: #c8453c; }}
table {{ border-collapse: collapse; margin: 8px 0 12px; font-size: .95rem; }}
th, td {{ border-bottom: 1px solid var(--line); padding: 4px 10px; text-align: left; vertical-align: top; }}
th {{ background: var(--bg); font-weight: 600; }}
td.n {{ text-align: right; font-variant-numeric: tabular-nums; }}
table.kv th {{ white-space: nowrap; padding-right: 24px; }}
#summary h2 {{ border-top: 0; }}
table.ex td {{ max-width: 640px; }}
.two {{ display: grid; grid-template-columns: 1fr auto; gap: 24px; align-items: start; }}
@media (max-width: 820px) {{ .two {{ grid-template-columns: 1fr; }} }}
figure {{ margin: 8px 0 12px; }}
figure img {{ display: block; max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 6px; }}
figcaption {{ color: var(--mute); font-size: .92rem; margin-top: 4px; }}
.tcap {{ margin: 10px 0 0; color: var(--mute); font-size: .9rem; }}
.note {{ color: var(--mute); font-style: italic; }}
.lineage {{ border: 1px solid var(--line); border-radius: 8px; padding: 8px 12px; margin: 10px 0; background: var(--bg); }}
.step, .answer {{ margin: 4px 0; white-space: pre-wrap; overflow-wrap: anywhere; }}
.answer {{ color: var(--mute); }}
.tag {{ display: inline-block; font-size: .78rem; background: #e4eaf1; color: #34465a; border-radius: 4px; padding: 0 6px; margin-right: 4px; white-space: nowrap; }}
.detail {{ color: var(--mute); font-size: .88rem; }}
code, pre {{ font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: .88em; }}
pre {{ background: var(--bg); padding: 10px; overflow-x: auto; }}
footer {{ color: var(--mute); font-size: .85rem; padding-top: 16px; padding-bottom: 32px; }}
</style></head>
<body>
{body}
<footer>Generated by <code>python -m evol report</code> at {generated}. Self-contained: the plots are embedded; the PNG links open the files beside this page.</footer>
</body></html>
"""
