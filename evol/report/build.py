"""One self-contained HTML page (and its PNG plots) that shows whether a run was good.

Everything is computed from the run directory alone: the manifest for the counts, records.jsonl and
rejected.jsonl for texts, scores.jsonl when ``python -m evol score`` ran, and the seed file when it is
still where the run read it (for the round-0 baseline). runstats gathers, plots draws, this module decides what
the page says and report_html renders its pieces.
"""

from __future__ import annotations

import logging
import statistics
import time
from pathlib import Path
from typing import Any

from evol.quality.scoring import Score
from evol.report.answers import answer_stats, answers_section
from evol.report.html import depth_table, esc, examples, figure, metric, page, setup, stats_table
from evol.report.plots import STYLE, Plot, make_plots
from evol.report.selection import selection_section
from evol.report.stats import (
    OUTCOMES,
    RoundStats,
    depth_by_parent_length,
    distinct_n,
    opening,
    pct,
    round_stats,
    run_seeds,
)
from evol.rundir.files import atomic_write_bytes
from evol.rundir.folder import MANIFEST, OPTIMIZE
from evol.rundir.reader import Run, funnel, load_run

__all__ = ["build_report", "distinct_n", "opening", "render_html"]

log = logging.getLogger("evol")

REPORT_DIR = "report"


def build_report(run_dir: Path, out: Path | None = None, export: Path | None = None) -> Path:
    """Write ``report.html`` and the PNGs into ``out`` (default RUN_DIR/report); returns the HTML's path.

    ``export`` is a folder of ``evol export --select`` (default RUN_DIR/export when there is one) whose chosen
    rows the report compares with the run's.
    """
    import matplotlib  # here, not at the top: the CLI and ``score`` start without it

    out = Path(out) if out else Path(run_dir) / REPORT_DIR
    if (Path(run_dir) / OPTIMIZE).is_file() and not (Path(run_dir) / MANIFEST).is_file():
        from evol.optimize.optimizer import load_report
        from evol.report.optimize import build_optimize_report

        return build_optimize_report(Path(run_dir), load_report(Path(run_dir) / OPTIMIZE), out)
    run = load_run(run_dir)
    seeds = run_seeds(run)
    from evol.quality.scoring import load_scores
    from evol.report.selection import find_export, selection_plots

    scores = load_scores(run.path)
    stats = round_stats(run, seeds, scores)
    chosen = find_export(run, export)
    with matplotlib.rc_context(STYLE):
        plots = make_plots(run, stats) + selection_plots(scores, chosen)
    out.mkdir(parents=True, exist_ok=True)
    for p in plots:
        atomic_write_bytes(out / f"{p.name}.png", p.png)
    text = render_html(run, stats, plots, seeds, scores, chosen)
    atomic_write_bytes(out / "report.html", text.encode("utf-8"))
    log.info("report: %s (%d plots)", out / "report.html", len(plots))
    return out / "report.html"


def findings(run: Run, stats: list[RoundStats]) -> list[tuple[str, str]]:
    """(level, sentence) worth reading first: ok, warn or bad."""
    c, m = run.counts, run.manifest
    out: list[tuple[str, str]] = []
    attempts, kept = c.attempts, c.kept
    if m.status != "complete":
        status = m.given("status", None)
        out.append(("bad", f"The run is {status}, not complete{': ' + m.reason if m.reason else ''}."))
    if not c.balanced:
        out.append(("bad", "The counts do not add up (attempts ≠ kept + eliminated + duplicates + failed)."))
    if attempts:
        rate = kept / attempts
        level = "ok" if rate >= 0.5 else "warn" if rate >= 0.2 else "bad"
        out.append((level, f"{kept} of {attempts} candidates kept ({rate:.0%})."))
        for label, kind, n in funnel(run):
            if kind in ("eliminated", "duplicate") and n / attempts >= 0.25:
                out.append(
                    ("warn", f"Rule {label} removed {n} candidates ({n / attempts:.0%}); look at its examples below.")
                )
    judge = m.judge
    if judge.unclear:
        level = "warn" if judge.unclear >= 0.05 * judge.judged else "ok"
        out.append(
            (
                level,
                (
                    f"The judge gave no readable verdict for {judge.unclear} of {judge.judged} "
                    f"evolutions, {judge.unclear_after_retry} of them again on the retry (rule judge_unclear); its "
                    f"answers are in the 'judge' field of records.jsonl and rejected.jsonl."
                ),
            )
        )
    if c.failed:
        out.append(
            ("warn", f"{c.failed} candidates failed on backend errors; running the same command again retries them.")
        )
    evolved = [s for s in stats if s.round > 0 and s.words]
    first = next((s for s in stats if s.words), None)
    if first and evolved and evolved[-1] is not first:
        a, b = statistics.median(first.words), statistics.median(evolved[-1].words)
        level = "ok" if b > a else "warn"
        out.append(
            (level, f"Median instruction length went from {a:g} words ({first.label}) to {b:g} ({evolved[-1].label}).")
        )
    scored = [s for s in stats if s.scores]
    if len(scored) >= 2:
        a, b = statistics.mean(scored[0].scores), statistics.mean(scored[-1].scores)
        out.append(
            (
                "ok" if b > a else "warn",
                f"Mean judged complexity went from {a:.1f} ({scored[0].label}) to {b:.1f} ({scored[-1].label}).",
            )
        )
    return out


def render_html(
    run: Run,
    stats: list[RoundStats],
    plots: list[Plot],
    seeds: list[tuple[str, str]],
    scores: dict[str, Score],
    chosen: dict[str, Any] | None = None,
) -> str:
    m, c = run.manifest, run.counts
    total = m.usage.tokens_total
    calls = sum(m.usage.calls.values())
    cached = sum(m.usage.calls_from_cache.values())
    status = m.given("status", None)
    parts: list[str] = []
    add = parts.append

    add(
        f"<header><h1>Run report <code>{esc(run.run_id)}</code></h1>"
        f"<p class='sub'>status <b class='st-{esc(status)}'>{esc(status)}</b> · profile <b>{esc(run.profile)}</b> · "
        f"started {esc(m.given('started'))} · {esc(m.given('seconds'))} s · folder <code>{esc(m.given('out', run.path))}</code></p></header>"
    )
    nav = (
        ["summary", "funnel"]
        + [p.name for p in plots if p.name not in ("funnel", "quality")]
        + ["answers", "examples", "setup"]
    )
    labels = {"difficulty": "complexity and quality", "selection": "chosen rows"}
    add("<nav>" + " ".join(f"<a href='#{n}'>{esc(labels.get(n, n.replace('_', ' ')))}</a>" for n in nav) + "</nav>")

    # --- summary
    cards = [
        ("seeds", "seeds"),
        ("rounds_done", "rounds"),
        ("attempts", "candidates"),
        ("kept", "kept"),
        ("eliminated", "eliminated"),
        ("duplicate", "duplicates"),
        ("failed", "failed"),
        ("dataset_rows", "dataset rows"),
    ]
    add("<section id='summary'><h2>Summary</h2><div class='cards'>")
    for key, label in cards:
        add(
            f"<div class='card k-{key}'><div class='v' data-metric='counts.{key}'>{esc(getattr(c, key))}</div><div class='l'>{label}</div></div>"
        )
    add("</div><div class='two'><ul class='findings'>")
    for level, text in findings(run, stats):
        add(f"<li class='{level}'>{esc(text)}</li>")
    add("</ul><table class='kv'>")
    for key in (
        "seeds_skipped",
        "seed_records",
        "seed_rejections",
        "seeds_with_kept_descendants",
        "seeds_without_kept_descendants",
        "judge_unclear",
        "balanced",
    ):
        if key in c.model_fields_set:  # an older manifest may not have it
            value = getattr(c, key)
            value = ("yes" if value else "no") if isinstance(value, bool) else value
            add(f"<tr><th>{esc(key.replace('_', ' '))}</th>{metric('counts.' + key, value)}</tr>")
    for key, label in (
        ("judged", "evolutions judged"),
        ("resolved_by_retry", "judge unclear, resolved by the retry"),
        ("unclear_after_retry", "judge unclear twice"),
    ):
        if key in m.judge.model_fields_set:
            add(f"<tr><th>{esc(label)}</th>{metric('judge.' + key, getattr(m.judge, key))}</tr>")
    add(f"<tr><th>LLM calls (from cache)</th><td class='n'>{calls} ({cached})</td></tr>")
    add(
        f"<tr><th>tokens prompt / completion</th><td class='n' data-metric='usage.tokens_total'>"
        f"{total.prompt_tokens:,} / {total.completion_tokens:,}</td></tr>"
    )
    add("</table></div></section>")

    # --- funnel and tables
    add("<section id='funnel'><h2>Funnel</h2>")
    add(figure(plots[0]))
    add(
        "<div class='two'><div><h3>By round</h3><table><tr><th>round</th><th>candidates</th>"
        + "".join(f"<th>{k}</th>" for k in OUTCOMES)
        + "<th>kept %</th></tr>"
    )
    for n, row in sorted(m.by_round.items(), key=lambda kv: int(kv[0])):
        add(
            f"<tr><td>{esc(n)}</td>{metric(f'by_round.{n}.attempts', row.attempts)}"
            + "".join(metric(f"by_round.{n}.{k}", getattr(row, k)) for k in OUTCOMES)
            + f"<td class='n'>{pct(row.kept, row.attempts)}</td></tr>"
        )
    add("</table></div><div><h3>By rule</h3><table><tr><th>rule</th><th>count</th></tr>")
    for rule, count in sorted(m.by_rule.items(), key=lambda kv: -kv[1]):
        add(f"<tr><td>{esc(rule)}</td>{metric(f'by_rule.{rule}', count)}</tr>")
    if not m.by_rule:
        add("<tr><td colspan='2'>nothing rejected</td></tr>")
    add("</table></div></div></section>")

    by_plot = {p.name: p for p in plots}
    # --- lengths
    add("<section id='instruction_length'><h2>Instruction length</h2>" + figure(by_plot["instruction_length"]))
    add(stats_table(stats, "instruction words", lambda s: s.words))
    if not seeds and not any(s.round == 0 for s in stats):
        add("<p class='note'>The seed file is no longer where the run read it, so there is no seed baseline.</p>")
    add("</section>")

    # --- operations
    add("<section id='operations'><h2>Operation mix</h2>" + figure(by_plot["operations"]))
    add(
        "<table><tr><th>operation</th><th>weight</th><th>candidates</th>"
        + "".join(f"<th>{k}</th>" for k in OUTCOMES)
        + "</tr>"
    )
    weights = m.profile.operations
    for op, kinds in sorted(m.by_operation.items()):
        add(
            f"<tr><td>{esc(op)}</td><td class='n'>{esc(weights.get(op, ''))}</td>{metric(f'by_operation.{op}.attempts', kinds.get('attempts', 0))}"
            + "".join(metric(f"by_operation.{op}.{k}", kinds.get(k, 0)) for k in OUTCOMES)
            + "</tr>"
        )
    add("</table>" + depth_table(depth_by_parent_length(run, seeds)) + "</section>")
    add(
        "<section id='rejections'><h2>Rejection reasons by operation</h2>"
        + figure(by_plot["rejections"])
        + "</section>"
    )
    add("<section id='response_length'><h2>Response length</h2>" + figure(by_plot["response_length"]))
    add(stats_table(stats, "response words", lambda s: s.output_words) + "</section>")
    if "turns" in by_plot:  # a run over conversations
        add("<section id='turns'><h2>Turns per conversation</h2>" + figure(by_plot["turns"]))
        add(stats_table(stats, "user turns", lambda s: s.turns) + "</section>")

    # --- diversity
    add("<section id='diversity'><h2>Lexical diversity</h2>" + figure(by_plot["diversity"]))
    rows = [s for s in stats if s.instructions]
    names = list(rows[0].diversity()) if rows else []
    add(
        "<table><tr><th>round</th><th>n</th>"
        + "".join(f"<th>{esc(k)}</th>" for k in names)
        + "<th>most common openings</th></tr>"
    )
    for s in rows:
        d = s.diversity()
        tops = ", ".join(f"{w} ({n})" for w, n in s.top_openings())
        add(
            f"<tr><td>{esc(s.label)}</td><td class='n'>{len(s.instructions)}</td>"
            + "".join(f"<td class='n'>{d[k]:.2f}</td>" for k in names)
            + f"<td>{esc(tops)}</td></tr>"
        )
    add("</table></section>")

    # --- complexity and quality (the section keeps its old id: links to #difficulty still land here)
    add("<section id='difficulty'><h2>Complexity and quality</h2>")
    if "difficulty" in by_plot:
        add(figure(by_plot["difficulty"]) + stats_table(stats, "complexity", lambda s: s.scores))
        if "quality" in by_plot:
            add(figure(by_plot["quality"]) + stats_table(stats, "quality", lambda s: s.quality))
    else:
        add(
            "<p class='note'>Not scored yet: <code>python -m evol score RUN_DIR</code> has an LLM judge rate each "
            "kept instruction's complexity and its answer's quality 1-10, then run the report again.</p>"
        )
    add("</section>" + selection_section(scores, chosen, figure))
    add(answers_section(answer_stats(run.records), m.cost_usd.by_stage))
    add(examples(run, seeds))
    add(setup(m))
    return page(
        title=esc(f"evol report {run.run_id}"),
        body="\n".join(parts),
        generated=esc(time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())),
    )
