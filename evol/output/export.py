"""Finished runs to training files: select rows, merge runs without duplicates, split, write, describe.

Every format is written without network and comes with a dataset card (``README.md``) whose YAML front
matter tells Hugging Face ``datasets`` which file is which split, so ``load_dataset(folder)`` works for all.
"""

from __future__ import annotations

import json
import logging
import random
from collections import defaultdict
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from evol.errors import ConfigError
from evol.models import Turn, alpaca_row, chat_turns
from evol.output import preference
from evol.output.card import dataset_card, pairs_section
from evol.output.formats import FORMATS, NAMES
from evol.output.rows import Picked, Row, RowFilter, pick_rows, pick_table
from evol.output.selection import Choice, choose, with_scores
from evol.rundir.files import atomic_path, atomic_write, write_json, write_jsonl
from evol.rundir.reader import load_run

log = logging.getLogger("evol")

EXPORT_MANIFEST = "export.json"
CARD = "README.md"
SPLITS = ("train", "validation")


# --------------------------------------------------------------------------- choosing rows


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
    return {
        "train": [r for i, r in enumerate(rows) if i not in val],
        "validation": [r for i, r in enumerate(rows) if i in val],
    }


# --------------------------------------------------------------------------- formats


#: the Vicuna v1.1 prompt format's opening, which WizardLM's chat models were trained on
VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)


def _turns(r: Row, system: str | None) -> list[Turn]:
    """Every turn of a row: its system message (the conversation's own, else ``--system``), the earlier turns, the
    instruction and its answer."""
    return [*chat_turns(r.history, r.instruction, system), Turn(role="assistant", content=r.output)]


_SHAREGPT = {"system": "system", "user": "human", "assistant": "gpt"}


def vicuna(turns: list[Turn]) -> str:
    """A conversation in the Vicuna v1.1 format: the system line, then ``USER: … ASSISTANT: …</s>`` per exchange."""
    system = next((t.content for t in turns if t.role == "system"), VICUNA_SYSTEM)
    parts = [system]
    for t in turns:
        if t.role == "user":
            parts.append(f" USER: {t.content}")
        elif t.role == "assistant":
            parts.append(f" ASSISTANT: {t.content}</s>")
    return "".join(parts)


def to_records(rows: list[Row], fmt: str, system: str | None = None) -> list[dict[str, Any]]:
    """The rows in a format's own shape (parquet and hf keep the lineage columns)."""
    if fmt == "alpaca":
        return [alpaca_row(r.instruction, r.output, r.history) for r in rows]
    if fmt in ("jsonl", "parquet", "hf"):
        scored = any(r.complexity is not None or r.quality is not None for r in rows)  # then every row has the keys
        turns = any(r.history for r in rows)  # likewise
        return [r.meta(scored, turns) for r in rows]
    if fmt == "sharegpt":
        return [
            {"id": r.id, "conversations": [{"from": _SHAREGPT[t.role], "value": t.content} for t in _turns(r, system)]}
            for r in rows
        ]
    if fmt == "openai-chat":
        return [{"messages": [{"role": t.role, "content": t.content} for t in _turns(r, system)]} for r in rows]
    if fmt == "vicuna":
        return [{"id": r.id, "text": vicuna(_turns(r, system))} for r in rows]
    raise ConfigError(f"Unknown format '{fmt}'; choose one of {', '.join(NAMES)}.")


def data_path(fmt: str, split_name: str) -> str:
    """Where a split goes inside the export folder (the hf layout is the Hub's own)."""
    if fmt == "hf":
        return f"data/{split_name}-00000-of-00001.parquet"
    return f"{split_name}{FORMATS[fmt].suffix}"


def write_split(path: Path, records: list[dict[str, Any]], fmt: str) -> None:
    if fmt in ("parquet", "hf"):
        _write_parquet(path, records)
    elif FORMATS[fmt].suffix == ".jsonl":
        write_jsonl(path, records)
    else:
        write_json(path, records)


def _write_parquet(path: Path, records: list[dict[str, Any]]) -> None:
    import pandas as pd  # here: the CLI starts without pandas' import cost

    frame = pd.DataFrame.from_records(
        records, columns=[c for c in Row.__dataclass_fields__ if not records or c in records[0]]
    )
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
    row_filter: RowFilter = field(default_factory=RowFilter)
    min_margin: float = preference.DEFAULT_MIN_MARGIN  # the preference formats: least score gap of a pair
    choice: Choice = field(default_factory=Choice)  # by scores: filters and the best K (evol.output.selection)


def export(run_paths: list[Path], out: Path, opts: ExportOptions, where: list[str] | None = None) -> dict[str, Any]:
    """Write the export folder (data files, README.md, export.json); returns what export.json holds.

    ``where`` names the runs as export.json should (their URLs, when ``run_paths`` are local copies)."""
    if opts.fmt not in FORMATS:
        raise ConfigError(f"Unknown format '{opts.fmt}'; choose one of {', '.join(NAMES)}.")
    if not run_paths:
        raise ConfigError("Name at least one run folder to export.")
    out = Path(out)
    previous = _check_out(out, run_paths)
    # choosing by score reads records.jsonl a line at a time and keeps columns of it, then the chosen rows
    runs = [load_run(p, read=not opts.choice.active) for p in run_paths]
    named = {id(r): name for r, name in zip(runs, where or [str(r.path) for r in runs], strict=True)}
    if opts.choice.active:
        table = pick_table(runs, opts.row_filter)
        chosen = choose(table, opts.choice)
        picked = Picked(rows=chosen.rows, runs=table.runs, dropped=table.dropped + chosen.left_out)
    else:
        chosen = None
        picked = pick_rows(runs, opts.row_filter)
        picked = Picked(rows=with_scores(picked.rows, picked.runs), runs=picked.runs, dropped=picked.dropped)
    pairs, pair_note = None, []
    if FORMATS[opts.fmt].pairs:  # of the rows chosen, those whose candidates make a pair wide enough
        records = {(run.run_id, rec.id): rec for run in picked.runs for rec in run.records}
        rows, pairs, unpaired = preference.pairs_for(picked.rows, records, opts.min_margin, opts.fmt)
        picked = Picked(rows=rows, runs=picked.runs, dropped=picked.dropped + unpaired)
        pair_note = pairs_section(pairs, opts.min_margin, unpaired)
    splits = split(picked.rows, opts.val_fraction, opts.seed)
    files = {name: data_path(opts.fmt, name) for name in splits}
    for name, rows in splits.items():
        records_out = (
            preference.to_records(rows, pairs, opts.fmt, opts.system)
            if pairs is not None
            else to_records(rows, opts.fmt, opts.system)
        )
        write_split(out / files[name], records_out, opts.fmt)
    counts = {name: len(rows) for name, rows in splits.items()}
    summary: dict[str, Any] = {  # export.json
        "format": opts.fmt,
        "files": files,
        "rows": counts,
        "val_fraction": opts.val_fraction,
        "seed": opts.seed,
        "system": opts.system,
        **({"min_margin": opts.min_margin} if pairs is not None else {}),
        "selection": opts.row_filter.describe(),
        "left_out": dict(picked.dropped.most_common()),
        "sources": [
            {
                "path": named.get(id(r), str(r.path)),
                "run_id": r.run_id,
                "profile": r.profile,
                "status": r.manifest.status or None,
            }
            for r in picked.runs
        ],
        "evol_version": _version(),
    }
    if chosen is not None:
        summary |= {
            "choice": opts.choice.describe(),
            "chosen": chosen.summary,
            "selected": [
                {
                    "run_id": r.run_id,
                    "id": r.id,
                    "complexity": r.complexity,
                    "quality": r.quality,
                }
                for r in chosen.rows
            ],
        }
    atomic_write(out / CARD, [dataset_card(picked, splits, summary, pair_note)])
    write_json(out / EXPORT_MANIFEST, summary)
    for stale in previous - {*files.values(), CARD, EXPORT_MANIFEST}:
        (out / stale).unlink(missing_ok=True)  # a split the last export wrote and this one does not
    log.info("export: %s into %s (%s)", opts.fmt, out, ", ".join(f"{k} {v}" for k, v in counts.items()))
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
