"""Finished runs to training files: select rows, merge runs without duplicates, split, write, describe.

Every format is written without network and comes with a dataset card (``README.md``) whose YAML front
matter tells Hugging Face ``datasets`` which file is which split, so ``load_dataset(folder)`` works for all.
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from . import preference
from .dedup import Deduper
from .errors import ConfigError, InputError
from .rundir import MANIFEST, RECORDS, REJECTED, atomic_path, atomic_write, read_jsonl, write_json, write_jsonl
from .selection import Choice, card_lines, choose, with_scores

log = logging.getLogger("evol")

FORMATS = ("alpaca", "jsonl", "sharegpt", "openai-chat", "parquet", "hf", *preference.FORMATS)
SUFFIX = {"alpaca": ".json", "jsonl": ".jsonl", "sharegpt": ".json", "openai-chat": ".jsonl", "parquet": ".parquet",
          **{f: ".jsonl" for f in preference.FORMATS}}
EXPORT_MANIFEST = "export.json"
CARD = "README.md"
SPLITS = ("train", "validation")


# --------------------------------------------------------------------------- reading a run directory

@dataclass
class Run:
    """A run directory as written by ``python -m evol run``."""

    path: Path
    manifest: dict[str, Any]
    records: list[dict[str, Any]]
    rejected: list[dict[str, Any]] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return str(self.manifest.get("run_id") or self.path.name)

    @property
    def profile(self) -> str:
        return str((self.manifest.get("profile") or {}).get("name") or (self.manifest.get("config") or {}).get("profile", ""))

    @property
    def counts(self) -> dict[str, Any]:
        return self.manifest.get("counts") or {}


def load_run(path: Path) -> Run:
    """Read a run directory's manifest, kept records and rejections; InputError if it is not one."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path} is not a folder; pass the run folder that 'python -m evol run' wrote.")
    for name in (MANIFEST, RECORDS):
        if not (path / name).is_file():
            raise InputError(f"{path} has no {name}; is it a run folder of 'python -m evol run'?")
    manifest = _read_json(path / MANIFEST)
    if not isinstance(manifest, dict) or "counts" not in manifest:
        raise InputError(f"{path / MANIFEST} is not a run manifest (it has no counts).")
    records = read_jsonl(path / RECORDS)
    rejected = read_jsonl(path / REJECTED) if (path / REJECTED).is_file() else []
    if manifest.get("status") != "complete":
        log.warning("%s: run status is '%s', not complete; using what it has so far", path, manifest.get("status"))
    return Run(path=path, manifest=manifest, records=records, rejected=rejected)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not valid JSON ({exc}).") from None


def word_count(text: str) -> int:
    """Whitespace-separated words: what the length options and the report's length plots count."""
    return len(text.split())


def funnel(run: Run) -> list[tuple[str, str, int]]:
    """(label, kind, count) from seeds to kept: candidates per round, then every rule that removed some.

    Kinds: ``seeds``, ``candidates``, ``eliminated``, ``duplicate``, ``failed``, ``kept``.
    """
    c, by_round = run.counts, run.manifest.get("by_round") or {}
    rows = [("Seeds", "seeds", int(c.get("seeds", 0)))]
    for n in sorted(by_round, key=int):
        rows.append((f"Candidates, round {n}", "candidates", int(by_round[n].get("attempts", 0))))
    rules = Counter((r["kind"], r["rule"]) for r in run.rejected if r.get("round", 0) > 0)
    order = {"eliminated": 0, "duplicate": 1, "failed": 2}
    for (kind, rule), n in sorted(rules.items(), key=lambda kv: (order.get(kv[0][0], 3), -kv[1], kv[0][1])):
        rows.append((rule, kind, n))
    rows.append(("Kept", "kept", int(c.get("kept", 0))))
    return rows


# --------------------------------------------------------------------------- choosing rows

@dataclass(frozen=True)
class Selection:
    """Which kept rows to export; None means no restriction."""

    rounds: frozenset[int] | None = None
    operations: frozenset[str] | None = None
    profiles: frozenset[str] | None = None
    min_words: int | None = None
    max_words: int | None = None
    seeds: bool | None = None  # None: the seed rows a run answered are exported when it has them

    def describe(self) -> dict[str, Any]:
        return {k: (sorted(v) if isinstance(v, frozenset) else v) for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class Row:
    instruction: str
    output: str
    id: str
    seed_id: str
    round: int
    operation: str
    run_id: str
    complexity: float | None = None  # evol score's, when the run was scored
    quality: float | None = None

    def meta(self, scored: bool = False) -> dict[str, Any]:
        out = {"instruction": self.instruction, "output": self.output, "id": self.id, "seed_id": self.seed_id,
               "round": self.round, "operation": self.operation, "run_id": self.run_id}
        return out | {"complexity": self.complexity, "quality": self.quality} if scored else out


@dataclass
class Picked:
    rows: list[Row]
    runs: list[Run]  # the runs that contributed (after the profile filter)
    dropped: Counter  # reason -> rows left out


def check_selection(sel: Selection, runs: list[Run]) -> None:
    """Options that contradict each other or name nothing in these runs are errors, not empty files."""
    if sel.min_words is not None and sel.max_words is not None and sel.min_words > sel.max_words:
        raise ConfigError(f"--min-words {sel.min_words} is more than --max-words {sel.max_words}.")
    if sel.rounds is not None and any(r < 0 for r in sel.rounds):
        raise ConfigError("--round takes round numbers from 0 (the seeds) up.")
    if sel.seeds is False and sel.rounds is not None and 0 in sel.rounds:
        raise ConfigError("--round 0 selects the seeds, which --no-seeds leaves out; drop one of the two.")
    if sel.operations:
        known = {"seed"} | {op for run in runs for op in (run.manifest.get("profile") or {}).get("operations", {})}
        known |= {r["operation"] for run in runs for r in run.records}
        unknown = sorted(sel.operations - known)
        if unknown:
            raise ConfigError(f"--operation {', '.join(unknown)} is not an operation of these runs; they have {', '.join(sorted(known))}.")
    if sel.seeds and not any(r["round"] == 0 for run in runs for r in run.records):
        raise ConfigError("--include-seeds: these runs answered no seeds; run them again with --include-seeds "
                          "(the evolutions come from the call cache, only the seed answers are new).")


def select(runs: list[Run], sel: Selection) -> Picked:
    """The rows to export, in run order then file order; the first copy of an instruction wins across runs."""
    if sel.profiles is not None:
        found = sorted({r.profile for r in runs})
        runs = [r for r in runs if r.profile in sel.profiles]
        if not runs:
            raise ConfigError(f"--profile {', '.join(sorted(sel.profiles))} matches none of these runs; their profiles: {', '.join(found)}.")
    check_selection(sel, runs)
    # exact mode on normalized text: the run already removed near duplicates within itself
    deduper = Deduper(1.0, "ratio", exact=True, near=False)
    rows, dropped, passing = [], Counter(), []
    for run in runs:
        for rec in run.records:
            reason = _excluded(rec, sel)
            if reason:
                dropped[reason] += 1
            else:
                passing.append((run.run_id, rec))
    # one batch, not a check and an add per row: each of those prepared its one text apart (17.5 -> 13.4 s here
    # for bench.select's 250k rows, under the profiler)
    matches = deduper.dedup([f"{rid}/{rec['id']}" for rid, rec in passing], [rec["instruction"] for _, rec in passing])
    for (rid, rec), match in zip(passing, matches):
        if match is not None:
            dropped["duplicate across runs"] += 1
            continue
        rows.append(Row(instruction=rec["instruction"], output=rec["output"], id=rec["id"], seed_id=rec["seed_id"],
                        round=int(rec["round"]), operation=rec["operation"], run_id=rid))
    if not rows and not dropped:
        raise InputError(f"{', '.join(str(r.path) for r in runs)} kept no rows; there is nothing to export.")
    if not rows:
        raise ConfigError(f"The selection leaves no rows to export ({_reasons(dropped)}); loosen it.")
    return Picked(rows=rows, runs=runs, dropped=dropped)


def _excluded(rec: dict[str, Any], sel: Selection) -> str | None:
    rnd = int(rec["round"])
    if sel.seeds is False and rnd == 0:
        return "seed row (--no-seeds)"
    if sel.rounds is not None and rnd not in sel.rounds and not (sel.seeds and rnd == 0):
        return "round not selected"
    if sel.operations is not None and rec["operation"] not in sel.operations and not (sel.seeds and rnd == 0):
        return "operation not selected"
    n = word_count(rec["instruction"])
    if sel.min_words is not None and n < sel.min_words:
        return "instruction shorter than --min-words"
    if sel.max_words is not None and n > sel.max_words:
        return "instruction longer than --max-words"
    return None


def _reasons(dropped: Counter) -> str:
    return ", ".join(f"{n} {why}" for why, n in dropped.most_common())


def split(rows: list[Row], val_fraction: float, seed: int) -> dict[str, list[Row]]:
    """Train/validation by seed lineage, deterministic for a given ``seed``.

    All evolutions of one seed go to the same side: they share most of their words, so splitting them
    would let validation rows leak into training.
    """
    if not 0 <= val_fraction < 1:
        raise ConfigError(f"--val-fraction must be at least 0 and below 1; got {val_fraction}.")
    if val_fraction == 0:
        return {"train": rows}
    groups: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        groups[row.seed_id].append(i)
    if len(groups) < 2:
        raise ConfigError("--val-fraction needs rows from at least two seeds; every row here descends from one.")
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    target = max(1, round(val_fraction * len(rows)))
    val: set[int] = set()
    for key in keys[:-1]:  # the last group always stays in train, so train is never empty
        if len(val) >= target:
            break
        val.update(groups[key])
    return {"train": [r for i, r in enumerate(rows) if i not in val],
            "validation": [r for i, r in enumerate(rows) if i in val]}


# --------------------------------------------------------------------------- formats

def _system(system: str | None) -> list[dict[str, str]]:
    return [{"role": "system", "content": system}] if system else []


def to_records(rows: list[Row], fmt: str, system: str | None = None) -> list[dict[str, Any]]:
    """The rows in a format's own shape (parquet and hf keep the lineage columns)."""
    if fmt == "alpaca":
        return [{"instruction": r.instruction, "output": r.output} for r in rows]
    if fmt in ("jsonl", "parquet", "hf"):
        scored = any(r.complexity is not None or r.quality is not None for r in rows)  # then every row has the keys
        return [r.meta(scored) for r in rows]
    if fmt == "sharegpt":
        head = [{"from": "system", "value": system}] if system else []
        return [{"id": r.id, "conversations": [*head, {"from": "human", "value": r.instruction},
                                               {"from": "gpt", "value": r.output}]} for r in rows]
    if fmt == "openai-chat":
        return [{"messages": [*_system(system), {"role": "user", "content": r.instruction},
                              {"role": "assistant", "content": r.output}]} for r in rows]
    raise ConfigError(f"Unknown format '{fmt}'; choose one of {', '.join(FORMATS)}.")


def data_path(fmt: str, split_name: str) -> str:
    """Where a split goes inside the export folder (the hf layout is the Hub's own)."""
    if fmt == "hf":
        return f"data/{split_name}-00000-of-00001.parquet"
    return f"{split_name}{SUFFIX[fmt]}"


def write_split(path: Path, records: list[dict[str, Any]], fmt: str) -> None:
    if fmt in ("parquet", "hf"):
        _write_parquet(path, records)
    elif SUFFIX[fmt] == ".jsonl":
        write_jsonl(path, records)
    else:
        write_json(path, records)


def _write_parquet(path: Path, records: list[dict[str, Any]]) -> None:
    import pandas as pd  # here: the CLI starts without pandas' import cost

    frame = pd.DataFrame.from_records(records, columns=[c for c in Row.__dataclass_fields__ if not records or c in records[0]])
    frame["round"] = frame["round"].astype("int64")
    with atomic_path(path) as tmp:  # pyarrow writes to a path
        frame.to_parquet(tmp, index=False, engine="pyarrow")


# --------------------------------------------------------------------------- the export as a whole

@dataclass(frozen=True)
class ExportOptions:
    fmt: str = "alpaca"
    val_fraction: float = 0.0
    seed: int = 0
    system: str | None = None
    selection: Selection = Selection()
    min_margin: float = preference.DEFAULT_MIN_MARGIN  # the preference formats: least score gap of a pair
    choice: Choice = field(default_factory=Choice)  # by scores: filters and the best K (evol.selection)


def export(run_paths: list[Path], out: Path, opts: ExportOptions) -> dict[str, Any]:
    """Write the export folder (data files, README.md, export.json); returns what export.json holds."""
    if opts.fmt not in FORMATS:
        raise ConfigError(f"Unknown format '{opts.fmt}'; choose one of {', '.join(FORMATS)}.")
    if not run_paths:
        raise ConfigError("Name at least one run folder to export.")
    out = Path(out)
    previous = _check_out(out, run_paths)
    runs = [load_run(p) for p in run_paths]
    picked = select(runs, opts.selection)
    chosen = choose(picked.rows, picked.runs, opts.choice) if opts.choice.active else None
    picked = Picked(rows=chosen.rows if chosen else with_scores(picked.rows, picked.runs), runs=picked.runs,
                    dropped=picked.dropped + (chosen.left_out if chosen else Counter()))
    pairs, pair_note = None, []
    if opts.fmt in preference.FORMATS:  # of the rows chosen, those whose candidates make a pair wide enough
        records = {(run.run_id, rec["id"]): rec for run in picked.runs for rec in run.records}
        rows, pairs, unpaired = preference.pairs_for(picked.rows, records, opts.min_margin)
        picked = Picked(rows=rows, runs=picked.runs, dropped=picked.dropped + unpaired)
        pair_note = preference.card_section(pairs, opts.min_margin, unpaired)
    splits = split(picked.rows, opts.val_fraction, opts.seed)
    files = {name: data_path(opts.fmt, name) for name in splits}
    for name, rows in splits.items():
        records_out = (preference.to_records(rows, pairs, opts.fmt, opts.system) if pairs is not None
                       else to_records(rows, opts.fmt, opts.system))
        write_split(out / files[name], records_out, opts.fmt)
    summary = {
        "format": opts.fmt,
        "files": files,
        "rows": {name: len(rows) for name, rows in splits.items()},
        "val_fraction": opts.val_fraction,
        "seed": opts.seed,
        "system": opts.system,
        **({"min_margin": opts.min_margin} if pairs is not None else {}),
        "selection": opts.selection.describe(),
        "left_out": dict(picked.dropped.most_common()),
        "sources": [{"path": str(r.path), "run_id": r.run_id, "profile": r.profile, "status": r.manifest.get("status")}
                    for r in picked.runs],
        "evol_version": _version(),
    }
    if chosen is not None:
        summary |= {"choice": opts.choice.describe(), "chosen": chosen.summary,
                    "selected": [{"run_id": r.run_id, "id": r.id, "complexity": s.complexity if s else None,
                                  "quality": s.quality if s else None} for r, s in zip(chosen.rows, chosen.scores)]}
    atomic_write(out / CARD, [dataset_card(picked, splits, summary, pair_note)])
    write_json(out / EXPORT_MANIFEST, summary)
    for stale in previous - {*files.values(), CARD, EXPORT_MANIFEST}:
        (out / stale).unlink(missing_ok=True)  # a split the last export wrote and this one does not
    log.info("export: %s into %s (%s)", opts.fmt, out, ", ".join(f"{k} {v}" for k, v in summary["rows"].items()))
    return summary


def _check_out(out: Path, run_paths: list[Path]) -> set[str]:
    """Refuse to write over anything that is not an earlier export; return that export's files."""
    if out.suffix in (".json", ".jsonl", ".parquet"):
        raise ConfigError(f"--out names a folder (it gets the data files and a README.md); got the file name {out}.")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder.")
    if any(out.resolve() == Path(p).resolve() for p in run_paths):
        raise ConfigError("--out must not be the run folder itself; name a new folder, e.g. RUN_DIR/export.")
    if not out.is_dir() or not any(out.iterdir()):
        return set()
    marker = out / EXPORT_MANIFEST
    if not marker.is_file():
        raise ConfigError(f"--out {out} is a folder with other files in it; name a new or empty folder.")
    try:
        return set(json.loads(marker.read_text(encoding="utf-8")).get("files", {}).values())
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return set()


def _version() -> str:
    try:
        return metadata.version("evol")
    except metadata.PackageNotFoundError:
        return "unknown"


# --------------------------------------------------------------------------- the dataset card

def dataset_card(picked: Picked, splits: dict[str, list[Row]], summary: dict[str, Any], extra: list[str] = ()) -> str:
    """README.md for the export: YAML front matter for ``datasets``, then what made it and how many."""
    files = summary["files"]
    yaml_lines = ["---", "configs:", "- config_name: default", "  data_files:"]
    for name in splits:
        yaml_lines += [f"  - split: {name}", f"    path: {files[name]}"]
    yaml_lines += ["license: other", "task_categories:", "- text-generation", "tags:", "- evol-instruct", "- synthetic",
                   "size_categories:", f"- {_size_category(sum(len(r) for r in splits.values()))}", "---", ""]
    runs = picked.runs
    models = sorted({m for r in runs for m in _models(r).values() if m})
    rows = [r for part in splits.values() for r in part]
    out = [
        "# Evol-Instruct dataset",
        "",
        f"{len(rows)} instruction/response pairs made by evol from "
        f"{_plural(len(runs), 'run')}, evolving seed instructions round by round with an LLM "
        "(WizardLM's Evol-Instruct method) and keeping only the evolutions that passed every elimination rule.",
        "",
        f"Format: **{summary['format']}**. " + "; ".join(f"`{files[k]}`: {len(v)} rows" for k, v in splits.items()) + ".",
        "",
        _format_note(summary["format"]),
        "",
        "## Contents",
        "",
        _table(["split", "rows"], [[k, len(v)] for k, v in splits.items()]),
        "",
        _table(["round", "rows"], [[("0 (seeds)" if n == 0 else n), c] for n, c in sorted(Counter(r.round for r in rows).items())]),
        "",
        _table(["operation", "rows"], [[op, c] for op, c in sorted(Counter(r.operation for r in rows).items())]),
        "",
    ]
    if summary["selection"] or summary["left_out"]:
        out += ["Selection: " + (", ".join(f"{k} = {v}" for k, v in summary["selection"].items())
                                 or ("by scores, below" if summary.get("choice") else "everything kept")) + ".",
                "", "Left out: " + (_reasons(Counter(summary["left_out"])) or "nothing") + ".", ""]
    if summary["val_fraction"]:
        out += [f"Validation: about {summary['val_fraction']:.0%} of rows, whole seed lineages at a time "
                f"(random seed {summary['seed']}), so no seed's evolutions sit on both sides.", ""]
    out += [*extra, *card_lines(summary), "## What made it", ""]
    for run in runs:
        out += _run_section(run)
    out += [
        "## License",
        "",
        "The responses and evolved instructions were generated by " + (", ".join(f"`{m}`" for m in models) or "an LLM")
        + ". Their use is governed by those models' terms of use and by the license of the seed instructions "
        "(seed files: " + (", ".join(f"`{Path(f).name}`" for r in runs for f in r.manifest.get("seed_files", [])) or "unknown")
        + "). Check both before you train on or publish this data; `license: other` above says the same.",
        "",
    ]
    return "\n".join(yaml_lines + out)


def _run_section(run: Run) -> list[str]:
    m, c = run.manifest, run.counts
    models = _models(run)
    ops = (m.get("profile") or {}).get("operations", {})
    out = [
        f"### Run `{run.run_id}`",
        "",
        f"- status: {m.get('status', '?')}, started {m.get('started', '?')}",
        f"- profile: `{run.profile}`, operations " + ", ".join(f"{k} (weight {v:g})" for k, v in ops.items()),
        f"- rounds: {c.get('rounds_done', '?')}, seeds: {c.get('seeds', '?')} ({c.get('seeds_skipped', 0)} skipped)",
        "- models: " + ", ".join(f"{k} `{v}`" for k, v in models.items() if v),
        f"- evol {(m.get('versions') or {}).get('evol', '?')}",
        "",
        "Funnel:",
        "",
        _table(["stage", "kind", "count"], [[label, kind, n] for label, kind, n in funnel(run)]),
        "",
        "Prompt templates (SHA-256):",
        "",
        _table(["template", "sha256"], [[k, f"`{v}`"] for k, v in (m.get("prompt_sha256") or {}).items()]),
        "",
    ]
    return out


def _models(run: Run) -> dict[str, str]:
    b = run.manifest.get("backend") or {}
    return {"evolve": b.get("evolve_model"), "respond": b.get("response_model"), "judge": b.get("judge_model")}


def _format_note(fmt: str) -> str:
    if fmt in preference.FORMATS:
        return preference.format_note(fmt)
    return {
        "alpaca": 'Each file is a JSON array of `{"instruction", "output"}` objects, the shape of the original Alpaca and WizardLM releases.',
        "jsonl": "One JSON object per line: `instruction`, `output`, and the lineage `id`, `seed_id`, `round`, `operation`, `run_id` "
                 "(and `complexity`, `quality` when the run was scored).",
        "sharegpt": 'Each file is a JSON array of `{"id", "conversations": [{"from": "human"}, {"from": "gpt"}]}` (ShareGPT).',
        "openai-chat": 'One `{"messages": [...]}` object per line: the chat fine-tuning format of OpenAI and most trainers.',
        "parquet": "Parquet tables with columns `instruction`, `output`, `id`, `seed_id`, `round`, `operation`, `run_id`.",
        "hf": "Parquet shards in the Hugging Face Hub layout: `datasets.load_dataset(\"<this folder>\")` reads them; upload the folder as is.",
    }[fmt]


def _table(head: list[str], rows: Iterable[list[Any]]) -> str:
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "n>1M"
