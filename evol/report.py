"""One self-contained HTML page (and its PNG plots) that shows whether a run was good.

Everything is computed from the run directory alone: the manifest for the counts, records.jsonl and
rejected.jsonl for texts, scores.jsonl when ``python -m evol score`` ran, and the seed file when it is
still where the run read it (for the round-0 baseline). runstats gathers, plots draws, this module writes the page.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any

from .answer_stats import answer_stats, answers_section
from .plots import STYLE, Plot, make_plots
from .report_select import selection_section
from .rundir import MANIFEST, OPTIMIZE, atomic_write_bytes
from .runfolder import Run, funnel, load_run
from .runstats import (
    OUTCOMES,
    LengthBucket,
    RoundStats,
    depth_by_parent_length,
    distinct_n,
    opening,
    pct,
    round_stats,
    run_seeds,
)
from .scoring import Score

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
        from .optimize import load_report
        from .optimize_report import build_optimize_report

        return build_optimize_report(Path(run_dir), load_report(Path(run_dir) / OPTIMIZE), out)
    run = load_run(run_dir)
    seeds = run_seeds(run)
    from .report_select import find_export, selection_plots
    from .scoring import load_scores

    scores = load_scores(run.path)
    stats = round_stats(run, seeds, scores)
    chosen = find_export(run, export)
    with matplotlib.rc_context(STYLE):
        plots = make_plots(run, stats) + selection_plots(scores, chosen)
    out.mkdir(parents=True, exist_ok=True)
    for p in plots:
        atomic_write_bytes(out / f"{p.name}.png", p.png)
    page = render_html(run, stats, plots, seeds, scores, chosen)
    atomic_write_bytes(out / "report.html", page.encode("utf-8"))
    log.info("report: %s (%d plots)", out / "report.html", len(plots))
    return out / "report.html"


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
        out.append(
            (
                "bad",
                f"The run is {status}, not complete{': ' + run.manifest['reason'] if run.manifest.get('reason') else ''}.",
            )
        )
    if not c.get("balanced", True):
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
    judge = run.manifest.get("judge") or {}
    if judge.get("unclear"):
        twice = judge.get("unclear_after_retry", 0)
        level = "warn" if judge["unclear"] >= 0.05 * judge.get("judged", 0) else "ok"
        out.append(
            (
                level,
                (
                    f"The judge gave no readable verdict for {judge['unclear']} of {judge.get('judged', 0)} "
                    f"evolutions, {twice} of them again on the retry (rule judge_unclear); its answers are in "
                    f"the 'judge' field of records.jsonl and rejected.jsonl."
                ),
            )
        )
    if c.get("failed"):
        out.append(
            ("warn", f"{c['failed']} candidates failed on backend errors; running the same command again retries them.")
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
    usage = m.get("usage") or {}
    total = usage.get("tokens_total") or {}
    calls = sum((usage.get("calls") or {}).values())
    cached = sum((usage.get("calls_from_cache") or {}).values())
    backend = m.get("backend") or {}
    parts: list[str] = []
    add = parts.append

    add(
        f"<header><h1>Run report <code>{_e(run.run_id)}</code></h1>"
        f"<p class='sub'>status <b class='st-{_e(m.get('status'))}'>{_e(m.get('status'))}</b> · profile <b>{_e(run.profile)}</b> · "
        f"started {_e(m.get('started', '?'))} · {_e(m.get('seconds', '?'))} s · folder <code>{_e(m.get('out', run.path))}</code></p></header>"
    )
    nav = (
        ["summary", "funnel"]
        + [p.name for p in plots if p.name not in ("funnel", "quality")]
        + ["answers", "examples", "setup"]
    )
    labels = {"difficulty": "complexity and quality", "selection": "chosen rows"}
    add("<nav>" + " ".join(f"<a href='#{n}'>{_e(labels.get(n, n.replace('_', ' ')))}</a>" for n in nav) + "</nav>")

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
            f"<div class='card k-{key}'><div class='v' data-metric='counts.{key}'>{_e(c.get(key, 0))}</div><div class='l'>{label}</div></div>"
        )
    add("</div><div class='two'><ul class='findings'>")
    for level, text in findings(run, stats):
        add(f"<li class='{level}'>{_e(text)}</li>")
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
        if key in c:
            value = ("yes" if c[key] else "no") if isinstance(c[key], bool) else c[key]
            add(f"<tr><th>{_e(key.replace('_', ' '))}</th>{_num('counts.' + key, value)}</tr>")
    judge = m.get("judge") or {}
    for key, label in (
        ("judged", "evolutions judged"),
        ("resolved_by_retry", "judge unclear, resolved by the retry"),
        ("unclear_after_retry", "judge unclear twice"),
    ):
        if key in judge:
            add(f"<tr><th>{_e(label)}</th>{_num('judge.' + key, judge[key])}</tr>")
    add(f"<tr><th>LLM calls (from cache)</th><td class='n'>{calls} ({cached})</td></tr>")
    add(
        f"<tr><th>tokens prompt / completion</th><td class='n' data-metric='usage.tokens_total'>"
        f"{total.get('prompt_tokens', 0):,} / {total.get('completion_tokens', 0):,}</td></tr>"
    )
    add("</table></div></section>")

    # --- funnel and tables
    add("<section id='funnel'><h2>Funnel</h2>")
    add(_figure(plots[0]))
    add(
        "<div class='two'><div><h3>By round</h3><table><tr><th>round</th><th>candidates</th>"
        + "".join(f"<th>{k}</th>" for k in OUTCOMES)
        + "<th>kept %</th></tr>"
    )
    for n, row in sorted((m.get("by_round") or {}).items(), key=lambda kv: int(kv[0])):
        add(
            f"<tr><td>{_e(n)}</td>{_num(f'by_round.{n}.attempts', row.get('attempts', 0))}"
            + "".join(_num(f"by_round.{n}.{k}", row.get(k, 0)) for k in OUTCOMES)
            + f"<td class='n'>{pct(row.get('kept', 0), row.get('attempts', 0))}</td></tr>"
        )
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
    add(
        "<table><tr><th>operation</th><th>weight</th><th>candidates</th>"
        + "".join(f"<th>{k}</th>" for k in OUTCOMES)
        + "</tr>"
    )
    weights = (m.get("profile") or {}).get("operations", {})
    for op, row in sorted((m.get("by_operation") or {}).items()):
        add(
            f"<tr><td>{_e(op)}</td><td class='n'>{_e(weights.get(op, ''))}</td>{_num(f'by_operation.{op}.attempts', row.get('attempts', 0))}"
            + "".join(_num(f"by_operation.{op}.{k}", row.get(k, 0)) for k in OUTCOMES)
            + "</tr>"
        )
    add("</table>" + _depth_table(depth_by_parent_length(run, seeds)) + "</section>")
    add(
        "<section id='rejections'><h2>Rejection reasons by operation</h2>"
        + _figure(by_plot["rejections"])
        + "</section>"
    )
    add("<section id='response_length'><h2>Response length</h2>" + _figure(by_plot["response_length"]))
    add(_stats_table(stats, "response words", lambda s: s.output_words) + "</section>")

    # --- diversity
    add("<section id='diversity'><h2>Lexical diversity</h2>" + _figure(by_plot["diversity"]))
    rows = [s for s in stats if s.instructions]
    names = list(rows[0].diversity()) if rows else []
    add(
        "<table><tr><th>round</th><th>n</th>"
        + "".join(f"<th>{_e(k)}</th>" for k in names)
        + "<th>most common openings</th></tr>"
    )
    for s in rows:
        d = s.diversity()
        tops = ", ".join(f"{w} ({n})" for w, n in s.top_openings())
        add(
            f"<tr><td>{_e(s.label)}</td><td class='n'>{len(s.instructions)}</td>"
            + "".join(f"<td class='n'>{d[k]:.2f}</td>" for k in names)
            + f"<td>{_e(tops)}</td></tr>"
        )
    add("</table></section>")

    # --- complexity and quality (the section keeps its old id: links to #difficulty still land here)
    add("<section id='difficulty'><h2>Complexity and quality</h2>")
    if "difficulty" in by_plot:
        add(_figure(by_plot["difficulty"]) + _stats_table(stats, "complexity", lambda s: s.scores))
        if "quality" in by_plot:
            add(_figure(by_plot["quality"]) + _stats_table(stats, "quality", lambda s: s.quality))
    else:
        add(
            "<p class='note'>Not scored yet: <code>python -m evol score RUN_DIR</code> has an LLM judge rate each "
            "kept instruction's complexity and its answer's quality 1-10, then run the report again.</p>"
        )
    add("</section>" + selection_section(scores, chosen, _figure))
    add(answers_section(answer_stats(run.records), (m.get("cost_usd") or {}).get("by_stage") or {}))
    add(_examples(run, seeds))
    add(_setup(run, backend))
    return PAGE.format(
        title=_e(f"evol report {run.run_id}"),
        body="\n".join(parts),
        generated=_e(time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())),
    )


def _figure(p: Plot) -> str:
    data = base64.b64encode(p.png).decode("ascii")
    return (
        f"<figure><img alt='{_e(p.title)}' src='data:image/png;base64,{data}'>"
        f"<figcaption>{_e(p.caption)} <a href='{_e(p.name)}.png'>PNG</a></figcaption></figure>"
    )


def _stats_table(stats: list[RoundStats], what: str, get) -> str:
    rows = ["<table><tr><th>round</th><th>n</th><th>mean</th><th>median</th><th>min</th><th>max</th></tr>"]
    for s in stats:
        v = get(s)
        if v:
            rows.append(
                f"<tr><td>{_e(s.label)}</td><td class='n'>{len(v)}</td><td class='n'>{statistics.mean(v):.1f}</td>"
                f"<td class='n'>{statistics.median(v):g}</td><td class='n'>{min(v):g}</td><td class='n'>{max(v):g}</td></tr>"
            )
    rows.append("</table>")
    return f"<p class='tcap'>{_e(what)}</p>" + "".join(rows)


def _depth_table(buckets: list[LengthBucket]) -> str:
    """Kept share of in-depth evolutions by parent length: a long parent's small genuine step must survive dedup."""
    if not any(b.candidates for b in buckets):
        return ""
    head = (
        "<h3>In-depth evolutions by parent length</h3><table id='depth'><tr><th>parent length (chars)</th>"
        "<th>candidates</th><th>kept</th><th>kept %</th><th>rejected by rule</th></tr>"
    )
    rows = [head]
    for b in buckets:
        rules = ", ".join(f"{r} {n}" for r, n in sorted(b.rules.items(), key=lambda kv: (-kv[1], kv[0])))
        rows.append(
            f"<tr><td>{_e(b.label)}</td>{_num(f'depth.{b.low}.candidates', b.candidates)}"
            f"{_num(f'depth.{b.low}.kept', b.kept)}<td class='n'>{pct(b.kept, b.candidates)}</td>"
            f"<td>{_e(rules or '–')}</td></tr>"
        )
    rows.append(
        "</table><p class='note'>Parent length is that of the instruction the candidate was evolved from. "
        "A kept share that falls with length, lost to near_duplicate, means dedup is eating genuine steps.</p>"
    )
    return "".join(rows)


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
        out.append(
            f"<div class='answer'><span class='tag'>answer</span> {_e(_cut(chain[-1]['output'], 500))}</div></div>"
        )
    if not chains:
        out.append("<p class='note'>No evolution was kept.</p>")
    out.append(
        "<h3>One rejection per rule</h3><table class='ex'><tr><th>rule</th><th>where</th><th>instruction / detail</th></tr>"
    )
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
    rows = [
        ("evolve model", backend.get("evolve_model")),
        ("response model", backend.get("response_model")),
        ("judge model", backend.get("judge_model")),
        ("seed files", ", ".join(m.get("seed_files", []))),
        ("versions", ", ".join(f"{k} {v}" for k, v in (m.get("versions") or {}).items())),
    ]
    out = ["<section id='setup'><h2>What made it</h2><table class='kv'>"]
    out += [f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows]
    out.append("</table><h3>Prompt templates</h3><table class='kv'>")
    out += [
        f"<tr><th>{_e(k)}</th><td><code title='{_e(v)}'>{_e(v[:16])}…</code></td></tr>"
        for k, v in (m.get("prompt_sha256") or {}).items()
    ]
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
