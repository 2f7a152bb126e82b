"""The run report's HTML pieces: escaping, tables, figures, the examples and setup sections, and the page
around them (``evol/report/report.html``). evol.report.build decides what goes on the page."""

from __future__ import annotations

import base64
import html
import json
import statistics
from collections.abc import Callable, Sequence
from importlib import resources
from string import Template
from typing import Any

from evol.models import Record
from evol.report.plots import Plot
from evol.report.stats import LengthBucket, RoundStats, pct
from evol.rundir.manifest import Manifest, self_judged_note
from evol.rundir.reader import Run


def page(title: str, body: str, generated: str) -> str:
    """The whole page: the template's style and footer around ``body`` (already HTML)."""
    template = (resources.files("evol.report") / "report.html").read_text(encoding="utf-8")
    return Template(template).substitute(title=title, body=body, generated=generated)


def esc(v: Any) -> str:
    return html.escape(str(v), quote=True)


def metric(key: str, value: Any) -> str:
    """A table cell whose number a test (or a script) can find by its manifest key."""
    return f'<td class="n" data-metric="{esc(key)}">{esc(value)}</td>'


def cut(text: str | None, n: int) -> str:
    text = text or ""
    return text if len(text) <= n else text[:n].rstrip() + " …"


def figure(p: Plot) -> str:
    data = base64.b64encode(p.png).decode("ascii")
    return (
        f"<figure><img alt='{esc(p.title)}' src='data:image/png;base64,{data}'>"
        f"<figcaption>{esc(p.caption)} <a href='{esc(p.name)}.png'>PNG</a></figcaption></figure>"
    )


def stats_table(stats: list[RoundStats], what: str, get: Callable[[RoundStats], Sequence[float]]) -> str:
    rows = ["<table><tr><th>round</th><th>n</th><th>mean</th><th>median</th><th>min</th><th>max</th></tr>"]
    for s in stats:
        v = get(s)
        if v:
            rows.append(
                f"<tr><td>{esc(s.label)}</td><td class='n'>{len(v)}</td><td class='n'>{statistics.mean(v):.1f}</td>"
                f"<td class='n'>{statistics.median(v):g}</td><td class='n'>{min(v):g}</td><td class='n'>{max(v):g}</td></tr>"
            )
    rows.append("</table>")
    return f"<p class='tcap'>{esc(what)}</p>" + "".join(rows)


def depth_table(buckets: list[LengthBucket]) -> str:
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
            f"<tr><td>{esc(b.label)}</td>{metric(f'depth.{b.low}.candidates', b.candidates)}"
            f"{metric(f'depth.{b.low}.kept', b.kept)}<td class='n'>{pct(b.kept, b.candidates)}</td>"
            f"<td>{esc(rules or '–')}</td></tr>"
        )
    rows.append(
        "</table><p class='note'>Parent length is that of the instruction the candidate was evolved from. "
        "A kept share that falls with length, lost to near_duplicate, means dedup is eating genuine steps.</p>"
    )
    return "".join(rows)


def examples(run: Run, seeds: list[tuple[str, str]]) -> str:
    """The deepest lineages (seed → each kept evolution) and one rejection per rule, texts cut short."""
    seed_text = dict(seeds) | {r.id: r.instruction for r in run.records if r.round == 0}
    by_id = {r.id: r for r in run.records}
    parents = {r.parent_id for r in run.records}
    leaves = [r for r in run.records if r.round > 0 and r.id not in parents]
    chains: list[list[Record]] = []
    for leaf in leaves:
        chain: list[Record] = []
        node: Record | None = leaf
        while node is not None:
            chain.append(node)
            node = by_id.get(node.parent_id) if node.round > 0 and node.parent_id is not None else None
        chains.append(chain[::-1])
    chains.sort(key=lambda ch: (-len(ch), ch[0].seed_index))
    out = ["<section id='examples'><h2>Examples</h2><h3>Lineages</h3>"]
    for chain in chains[:3]:
        sid = chain[0].seed_id
        out.append("<div class='lineage'>")
        if sid in seed_text and chain[0].round > 0:
            out.append(f"<div class='step'><span class='tag'>seed</span> {esc(cut(seed_text[sid], 400))}</div>")
        for r in chain:
            tag = "seed" if r.round == 0 else f"round {r.round} · {r.operation}"
            out.append(f"<div class='step'><span class='tag'>{esc(tag)}</span> {esc(cut(r.instruction, 700))}</div>")
        out.append(f"<div class='answer'><span class='tag'>answer</span> {esc(cut(chain[-1].output, 500))}</div></div>")
    if not chains:
        out.append("<p class='note'>No evolution was kept.</p>")
    out.append(
        "<h3>One rejection per rule</h3><table class='ex'><tr><th>rule</th><th>where</th><th>instruction / detail</th></tr>"
    )
    seen: set[str] = set()
    for rej in run.rejected:
        if rej.rule in seen:
            continue
        seen.add(rej.rule)
        where = f"{rej.kind}, round {rej.round}, {rej.operation}"
        body = esc(cut(rej.instruction or "", 300))
        if rej.output:
            body += f"<br><span class='tag'>answer</span> {esc(cut(rej.output, 200))}"
        if rej.detail:
            body += f"<br><span class='detail'>{esc(cut(rej.detail, 200))}</span>"
        out.append(f"<tr><td>{esc(rej.rule)}</td><td>{esc(where)}</td><td>{body}</td></tr>")
    if not seen:
        out.append("<tr><td colspan='3'>nothing rejected</td></tr>")
    out.append("</table></section>")
    return "".join(out)


def setup(m: Manifest) -> str:
    rows = [
        ("evolve model", m.backend.evolve_model),
        ("response model", m.backend.response_model),
        ("judge model", m.backend.judge_model),
        ("seed files", ", ".join(m.seed_files)),
        ("versions", ", ".join(f"{k} {v}" for k, v in m.versions.items())),
    ]
    wrote = m.backend.self_judged()
    if wrote and m.backend.judge_model:
        rows.append(("judge's own work", self_judged_note(m.backend.judge_model, wrote)))
    out = ["<section id='setup'><h2>What made it</h2><table class='kv'>"]
    out += [f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows]
    out.append("</table><h3>Prompt templates</h3><table class='kv'>")
    out += [
        f"<tr><th>{esc(k)}</th><td><code title='{esc(v)}'>{esc(v[:16])}…</code></td></tr>"
        for k, v in m.prompt_sha256.items()
    ]
    out.append("</table><details><summary>Full configuration</summary><pre>")
    out.append(esc(json.dumps(m.config, indent=2)))
    out.append("</pre></details></section>")
    return "".join(out)
