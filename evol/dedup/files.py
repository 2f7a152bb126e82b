"""Removing duplicates from any dataset file (``python -m evol dedup``): the kept rows written back in the input's
own format, and a log of every removal beside them."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from evol.dedup.index import Deduper
from evol.errors import InputError
from evol.rundir.files import atomic_path, atomic_write, write_jsonl
from evol.seeds import read_rows

_JSONL = (".jsonl", ".ndjson")


def file_kind(suffix: str) -> str:
    """A file's format by its suffix: .jsonl and .ndjson are one."""
    suffix = suffix.lower()
    return ".jsonl" if suffix in _JSONL else suffix


def dedup_file(
    src: Path,
    out: Path,
    deduper: Deduper,
    *,
    compare: str = "instruction",
    instruction_field: str | None = None,
    input_field: str | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """Keep the first copy of every row of ``src`` in ``out``; the removals go to OUT.removed.jsonl (row, id, the
    row it duplicates, rule, score). ``name`` is how the log and errors name ``src`` (its URL, when ``src`` is a
    local copy that is gone once the command ends). Returns the summary the command prints."""
    try:
        rows = list(read_rows(src, instruction_field=instruction_field, input_field=input_field))
    except InputError as exc:
        if name is None:
            raise
        raise InputError(str(exc).replace(str(src), name)) from None
    cut = len(str(src))  # a row's "file:line" names the copy: the log says name:line instead
    texts = [r.instruction if compare == "instruction" else f"{r.instruction}\n{r.output or ''}" for r in rows]
    matches = deduper.dedup([str(i) for i in range(len(rows))], texts)
    kept = [i for i, m in enumerate(matches) if m is None]
    removed = []
    for i, m in enumerate(matches):
        if m is not None:
            j = int(m.duplicate_of)
            removed.append(
                {
                    "row": i + 1,
                    "id": rows[i].given_id,
                    "where": rows[i].where if name is None else name + rows[i].where[cut:],
                    "duplicate_of_row": j + 1,
                    "duplicate_of_id": rows[j].given_id,
                    "rule": m.rule,
                    "score": m.score,
                }
            )
    _write_kept(src, out, kept, len(rows))
    sidecar = out.with_name(out.stem + ".removed.jsonl")
    write_jsonl(sidecar, removed)
    counts = Counter(r["rule"] for r in removed)
    return {
        "out": str(out),
        "removed_log": str(sidecar),
        "rows": len(rows),
        "kept": len(kept),
        **{rule: counts[rule] for rule in ("exact_duplicate", "near_duplicate", "semantic_duplicate")},
    }


def _write_kept(src: Path, out: Path, kept: list[int], total: int) -> None:
    """Write the kept records of ``src`` to ``out`` as they were: lines verbatim, table rows and JSON items as read."""
    suffix = src.suffix.lower()
    if suffix in (".csv", ".tsv"):
        import pandas as pd  # imported here: slow to import, and only tables need it

        sep = "\t" if suffix == ".tsv" else ","
        df = pd.read_csv(src, sep=sep, dtype=str, keep_default_na=False)
        _same_count(src, len(df), total)
        atomic_write(out, [df.iloc[kept].to_csv(index=False, sep=sep)])
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(src)
        _same_count(src, table.num_rows, total)
        with atomic_path(out) as tmp:
            pq.write_table(table.take(kept), tmp)
    elif suffix == ".json" and (data := _json_or_none(src)) is not None:
        if isinstance(data, dict):  # {"data": [...]}: keep the wrapper
            key = next(k for k, v in data.items() if isinstance(v, list))
            items = data[key]
            data = {**data, key: [items[i] for i in kept]}
        else:
            items = data
            data = [items[i] for i in kept]
        _same_count(src, len(items), total)
        atomic_write(out, [json.dumps(data, ensure_ascii=False, indent=2), "\n"])
    else:  # TXT, JSONL (and JSONL named .json): one record per non-blank line
        lines = [line for line in src.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
        _same_count(src, len(lines), total)
        atomic_write(out, [lines[i] + "\n" for i in kept])


def _json_or_none(src: Path) -> Any:
    """The parsed JSON document, or None for JSONL named .json (the reader accepts both)."""
    try:
        return json.loads(src.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":
            return None
        raise


def _same_count(src: Path, found: int, expected: int) -> None:
    if found != expected:  # the reader and the writer must see the same records, or rows would be mismatched
        raise InputError(f"{src} holds {found} records but {expected} rows were read; re-save it as plain JSONL.")
