"""``evol report DIR`` for an ``evol optimize`` folder: the development failure rate step by step.

One self-contained page from DIR/optimize.json alone: a plot of every candidate's failure rate per step
with the best so far, the starting method and the baseline profile drawn across; a table of the failures
by the paper's kinds and by rule, with the complexity figure, for the start, the final method and the baseline;
each step's candidates (their failure kinds, complexity, why each won or lost, their analyses); the final method.
"""

from __future__ import annotations

import time
from pathlib import Path

from evol.optimize.types import FAILURE_KINDS, Evaluation, OptimizeReport, Step
from evol.report.html import esc, figure, page
from evol.report.plots import STYLE, Plot, _png, _subplots
from evol.rundir.files import atomic_write_bytes

COLORS = {"best": "#3f78b5", "candidate": "#9aa4ad", "invalid": "#c8453c", "start": "#e08a3c", "baseline": "#8e6bbf"}


def plot_steps(report: OptimizeReport) -> bytes:
    steps = list(range(len(report.steps) + 1))
    best = [
        report.start.evaluation.failure_rate,
        *(s.best_failure_rate for s in report.steps),
    ]
    fig, ax = _subplots(9.5, 4.6)
    xs = [s.step for s in report.steps for c in s.candidates if c.evaluation is not None]
    ys = [c.evaluation.failure_rate for s in report.steps for c in s.candidates if c.evaluation is not None]
    ax.scatter(xs, ys, color=COLORS["candidate"], s=36, zorder=2, label="a candidate method")
    bad = [s.step for s in report.steps for c in s.candidates if not c.valid]
    if bad:
        ax.scatter(
            bad,
            [1.02] * len(bad),
            marker="x",
            color=COLORS["invalid"],
            zorder=2,
            label="an invalid candidate (never evaluated)",
        )
    ax.plot(steps, best, color=COLORS["best"], marker="o", linewidth=2.2, zorder=3, label="best method so far")
    ax.axhline(best[0], color=COLORS["start"], linestyle="--", linewidth=1.2, label=f"starting method ({best[0]:.2f})")
    if report.baseline is not None:
        rate = report.baseline.evaluation.failure_rate
        ax.axhline(
            rate,
            color=COLORS["baseline"],
            linestyle=":",
            linewidth=1.6,
            label=f"profile {report.baseline.profile} ({rate:.2f})",
        )
    ax.set_xticks(steps, ["start", *(str(s) for s in steps[1:])])
    ax.set_ylim(-0.03, 1.08)
    ax.set_xlabel("optimization step")
    ax.set_ylabel("development failure rate")
    ax.set_title("Failure rate of the evolving method, step by step")
    ax.legend(frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _png(fig)


def build_optimize_report(path: Path, report: OptimizeReport, out: Path) -> Path:
    import matplotlib

    with matplotlib.rc_context(STYLE):
        plot = Plot(
            "failure_rate_by_step",
            "Failure rate by step",
            plot_steps(report),
            "Each dot is a candidate's failure rate on the development set; the line is the method kept after "
            "each step; the dashed and dotted lines are the starting method and the baseline profile.",
        )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / f"{plot.name}.png", plot.png)
    atomic_write_bytes(out / "report.html", render(path, report, plot).encode("utf-8"))
    return out / "report.html"


def render(path: Path, report: OptimizeReport, plot: Plot) -> str:
    start = report.start.evaluation
    final = next((c.evaluation for s in reversed(report.steps) for c in s.candidates if c.kept), start)
    rows = [("starting method", start), ("final method", final)]
    if report.baseline is not None:
        rows.append((f"profile {report.baseline.profile}", report.baseline.evaluation))
    parts = [
        (
            f"<header><h1>evol optimize <code>{esc(path.name)}</code></h1>"
            f"<p class='sub'><span class='st-{esc(report.status)}'>{esc(report.status)}</span>: {esc(report.reason)}. "
            f"Profile <code>{esc(report.profile)}</code>, operation <code>{esc(report.operation)}</code>; evolving model "
            f"<code>{esc(report.evolve_model)}</code>, optimizer <code>{esc(report.optimizer_model)}</code>; "
            f"{len(report.dev)} development seeds.</p></header>"
        ),
        "<section id='summary'><h2>Failure rate</h2>",
        figure(plot),
        _comparison(rows),
        "</section>",
        "<section><h2>Steps</h2>",
        *(_step(s) for s in report.steps),
        "</section>",
        f"<section><h2>The final method</h2><pre>{esc(report.best_method)}</pre></section>",
    ]
    return page(
        title=esc(f"evol optimize {path.name}"),
        body="\n".join(parts),
        generated=esc(time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())),
    )


def _comparison(rows: list[tuple[str, Evaluation | None]]) -> str:
    rules = sorted({r for _, e in rows if e for r in e.by_rule})
    head = "".join(f"<th>{esc(k)}</th>" for k in FAILURE_KINDS) + "".join(f"<th>{esc(r)}</th>" for r in rules)
    out = [
        "<table><tr><th>method</th><th>failure rate</th><th>complexity</th><th>attempts</th>"
        f"{head}<th>calls failed</th></tr>"
    ]
    for name, e in rows:
        if e is None:
            continue
        cells = "".join(f"<td class='n'>{e.by_kind.get(k, 0)}</td>" for k in FAILURE_KINDS)
        cells += "".join(f"<td class='n'>{e.by_rule.get(r, 0)}</td>" for r in rules)
        out.append(
            f"<tr><td>{esc(name)}</td><td class='n' data-metric='{esc(name)}'>{e.failure_rate:.3f}</td>"
            f"<td class='n' data-complexity='{esc(name)}'>{_figure(e.complexity)}</td>"
            f"<td class='n'>{e.attempts}</td>{cells}<td class='n'>{e.calls_failed}</td></tr>"
        )
    return "".join(out) + "</table>"


def _figure(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _step(step: Step) -> str:
    rows = [
        "<table><tr><th>candidate</th><th>failure rate</th><th>complexity</th><th>failures by kind</th>"
        "<th>failures by rule</th><th>why</th></tr>"
    ]
    for c in step.candidates:
        if c.evaluation is None:
            rate, complexity, kinds, rules = "–", "–", "", ""
        else:
            rate, complexity = f"{c.evaluation.failure_rate:.3f}", _figure(c.evaluation.complexity)
            kinds = ", ".join(f"{esc(k)} {n}" for k, n in c.evaluation.by_kind.items() if n) or "none"
            rules = ", ".join(f"{esc(r)} {n}" for r, n in c.evaluation.by_rule.items()) or "none"
        rows.append(
            f"<tr><td>{c.index}</td><td class='n'>{rate}</td><td class='n'>{complexity}</td><td>{kinds}</td>"
            f"<td>{rules}</td><td>{esc(c.why or ('invalid: ' + c.reason if not c.valid else ''))}</td></tr>"
        )
    verdict = "improved" if step.improved else "no candidate beat the method it started from"
    analyses = "".join(
        f"<details><summary>Candidate {c.index}: the optimizer's analysis</summary><pre>{esc(c.analysis)}</pre>"
        "</details>"
        for c in step.candidates
        if c.analysis
    )
    floor = f"; complexity floor {step.min_complexity:.3f}" if step.min_complexity is not None else ""
    return (
        f"<h3>Step {step.step}: best {step.best_failure_rate:.3f}, {verdict}</h3>"
        f"<p class='detail'>{esc(step.why)}{esc(floor)}. Mini-batch: {esc(', '.join(step.batch))}</p>"
        + "".join(rows)
        + "</table>"
        + analyses
    )
