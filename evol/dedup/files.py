"""Removing duplicates from any dataset file (``python -m evol dedup``): the kept rows written back in the input's
own format, and a log of every removal beside them."""

from __future__ import annotations

import json
import tempfile
from collections import Counter, deque
from collections.abc import Iterator
from itertools import tee
from pathlib import Path
from typing import Any

from evol.dedup.index import Deduper
from evol.errors import InputError
from evol.rundir.files import atomic_path, atomic_write, jsonl_line
from evol.seeds import numbered_lines, read_rows

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
    local copy that is gone once the command ends). Returns the summary the command prints.

    The rows stream through: what stays per row is its given id (a later row may repeat it; a removed row's is
    dropped) and a byte saying whether it is kept, besides what the index keeps of the kept texts."""
    cut = len(str(src))  # a row's "file:line" names the copy: the log says name:line instead
    given: list[str | None] = []
    places: deque[str] = deque()  # "file:line" of the rows read (on the Deduper's worker thread) but not decided

    def rows() -> Iterator[tuple[str, str]]:
        for i, r in enumerate(read_rows(src, instruction_field=instruction_field, input_field=input_field)):
            given.append(r.given_id)
            places.append(r.where)
            yield str(i), r.instruction if compare == "instruction" else f"{r.instruction}\n{r.output or ''}"

    ids, texts = tee(rows())  # one pass over the file feeds both; tee holds only the row between them
    keep = bytearray()  # 1 for a kept row, 0 for a removed one
    counts: Counter[str] = Counter()
    with tempfile.TemporaryFile("w+", encoding="utf-8") as log:  # the removals, until the kept file is whole
        try:
            for i, m in enumerate(deduper.dedup_iter((r[0] for r in ids), (r[1] for r in texts))):
                where = places.popleft()
                keep.append(m is None)
                if m is None:
                    continue
                j = int(m.duplicate_of)
                removal = {
                    "row": i + 1,
                    "id": given[i],
                    "where": where if name is None else name + where[cut:],
                    "duplicate_of_row": j + 1,
                    "duplicate_of_id": given[j],
                    "rule": m.rule,
                    "score": m.score,
                }
                log.write(jsonl_line(removal))
                given[i] = None  # a removed row is never the one a later row repeats
                counts[m.rule] += 1
        except InputError as exc:
            if name is None:
                raise
            raise InputError(str(exc).replace(str(src), name)) from None
        _write_kept(src, out, keep)
        sidecar = out.with_name(out.stem + ".removed.jsonl")
        log.seek(0)
        atomic_write(sidecar, iter(lambda: log.read(1 << 16), ""))
    return {
        "out": str(out),
        "removed_log": str(sidecar),
        "rows": len(keep),
        "kept": keep.count(1),
        **{rule: counts[rule] for rule in ("exact_duplicate", "near_duplicate", "semantic_duplicate")},
    }


def _write_kept(src: Path, out: Path, keep: bytearray) -> None:
    """Write the kept records of ``src`` (``keep[i]`` for record i) to ``out`` as they were: lines verbatim, table
    rows and JSON items as read."""
    suffix = src.suffix.lower()
    total = len(keep)
    if suffix in (".csv", ".tsv", ".parquet", ".json"):
        kept = [i for i, k in enumerate(keep) if k]
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
    else:  # TXT, JSONL (and JSONL named .json): one record per non-blank line, cut where the reader cuts them
        atomic_write(out, _kept_lines(src, keep))


def _kept_lines(src: Path, keep: bytearray) -> Iterator[str]:
    """The kept lines of a TXT or JSONL file, read as they are written; a count that differs from the reader's
    raises before the file is committed."""
    batch: list[str] = []
    records = 0
    for _, line in numbered_lines(src):
        if line.strip():
            if records < len(keep) and keep[records]:
                batch.append(line + "\n")
                if len(batch) >= 4096:
                    yield "".join(batch)
                    batch = []
            records += 1
    _same_count(src, records, len(keep))
    yield "".join(batch)


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
