"""The report's section on an export chosen by scores (``evol export --select``): score distributions of the
run's scored rows against the chosen ones, and the chosen set's diversity, from the export's export.json."""

from __future__ import annotations

import html
import json
import logging
import statistics
from pathlib import Path
from typing import Any

from evol.errors import InputError
from evol.output.export import EXPORT_MANIFEST
from evol.quality.scoring import CRITERIA, Score
from evol.report.plots import Plot, _png
from evol.rundir.reader import Run

log = logging.getLogger("evol")

DEFAULT_EXPORT = "export"  # RUN_DIR/export, the folder the README's examples write


def find_export(run: Run, folder: Path | None) -> dict[str, Any] | None:
    """The export.json of ``folder`` (default RUN_DIR/export when it has one) if it chose rows of this run by score."""
    path = Path(folder) / EXPORT_MANIFEST if folder else run.path / DEFAULT_EXPORT / EXPORT_MANIFEST
    if not path.is_file():
        if folder:
            raise InputError(
                f"--export {folder} has no {EXPORT_MANIFEST}; name a folder 'python -m evol export' wrote."
            )
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not valid JSON ({exc}).") from None
    if not isinstance(data, dict) or "selected" not in data:
        if folder:
            log.warning("report: %s chose no rows by score (no --select or score filter); nothing to compare", path)
        return None
    data["path"] = str(path)
    data["mine"] = [s for s in data["selected"] if s.get("run_id") == run.run_id]
    return data


def _values(scores: list[Score], criterion: str) -> list[float]:
    return [v for v in (getattr(s, criterion) for s in scores) if v is not None]


def plot_selection(before: list[Score], after: list[Score]) -> bytes:
    """Share of rows at each score, all scored rows against the chosen ones, one panel per criterion."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.5, 3.8))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, criterion in zip(axes, CRITERIA, strict=True):
        for offset, (label, rows, color) in (
            (-0.2, ("all scored rows", before, "#9aa4ad")),
            (0.2, ("chosen rows", after, "#3f9a5a")),
        ):
            values = _values(rows, criterion)
            shares = [sum(round(v) == x for v in values) / len(values) if values else 0 for x in range(1, 11)]
            ax.bar(
                [x + offset for x in range(1, 11)], shares, width=0.4, color=color, label=f"{label} (n={len(values)})"
            )
        ax.set_xticks(range(1, 11))
        ax.set_xlabel(criterion)
        ax.set_title(f"{criterion.capitalize()} (1-10)")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(frameon=False, fontsize=9, loc="upper left")
    axes[0].set_ylabel("share of rows")
    return _png(fig)


def selection_plots(scores: dict[str, Score], chosen: dict[str, Any] | None) -> list[Plot]:
    if not chosen or not chosen["mine"]:
        return []
    picked = [scores[s["id"]] for s in chosen["mine"] if s["id"] in scores]
    return [
        Plot(
            "selection",
            "Chosen rows",
            plot_selection(list(scores.values()), picked),
            "How complexity and quality are spread over all of the run's scored rows and over the rows "
            "'evol export --select' chose; the chosen ones should sit to the right.",
        )
    ]


def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def selection_section(scores: dict[str, Score], chosen: dict[str, Any] | None, figure) -> str:
    """The HTML section; ``figure`` renders a Plot as the rest of the report does."""
    head = "<section id='selection'><h2>Chosen rows</h2>"
    if not chosen:
        return (
            head + "<p class='note'>No export chose rows by score yet: <code>python -m evol export RUN_DIR --out "
            "RUN_DIR/export --select K</code> (after <code>evol score</code>), then run the report again, or name "
            "another export folder with <code>--export</code>.</p></section>"
        )
    how = chosen.get("choice") or {}
    c = chosen.get("chosen") or {}
    out = [
        head,
        f"<p>From <code>{_e(chosen['path'])}</code>: {len(chosen['mine'])} of this run's rows "
        f"({c.get('taken', 0)} in all from {c.get('eligible', 0)} eligible) chosen by "
        + _e(", ".join(f"{k} {v}" for k, v in how.items()))
        + ".</p>",
    ]
    for p in selection_plots(scores, chosen):
        out.append(figure(p))
    picked = [scores[s["id"]] for s in chosen["mine"] if s["id"] in scores]
    out.append(
        "<table><tr><th>score</th><th>rows</th><th>n</th><th>mean</th><th>median</th><th>min</th><th>max</th></tr>"
    )
    for criterion in CRITERIA:
        for label, rows in (("all scored", list(scores.values())), ("chosen", picked)):
            v = _values(rows, criterion)
            if v:
                out.append(
                    f"<tr><td>{criterion}</td><td>{label}</td><td class='n'>{len(v)}</td>"
                    f"<td class='n' data-metric='selection.{criterion}.{label.split()[0]}.mean'>{statistics.mean(v):.2f}</td>"
                    f"<td class='n'>{statistics.median(v):g}</td><td class='n'>{min(v):g}</td><td class='n'>{max(v):g}</td></tr>"
                )
    out.append("</table>")
    div = c.get("diversity") or {}
    if div.get("selected") and div.get("best_by_score_alone"):
        a, b = div["selected"]["mean_nearest_similarity"], div["best_by_score_alone"]["mean_nearest_similarity"]
        out.append(
            f"<p>Diversity: a chosen row's mean similarity to its nearest chosen neighbour is "
            f"<b data-metric='selection.diversity.selected'>{a:.3f}</b> (rapidfuzz ratio, "
            f"{div['selected']['sampled']} rows sampled), against {b:.3f} for as many rows taken by score alone; "
            f"{c.get('skipped_as_similar', 0)} rows were skipped as too similar to one already chosen.</p>"
        )
    out.append("</section>")
    return "".join(out)
