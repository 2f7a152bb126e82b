"""Removing duplicates from any dataset file (``python -m evol dedup``): the kept rows written back in the input's
own format, and a log of every removal beside them."""

from __future__ import annotations

import json
import multiprocessing
import tempfile
from collections import Counter, deque
from collections.abc import Iterator
from itertools import islice, tee
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from evol.dedup.index import Chunk, Deduper, Preparer
from evol.errors import InputError
from evol.rundir.files import atomic_path, atomic_write, jsonl_line
from evol.seeds import SourceRow, numbered_lines, read_rows

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
    in_child: bool | None = None,
) -> dict[str, Any]:
    """Keep the first copy of every row of ``src`` in ``out``; the removals go to OUT.removed.jsonl (row, id, the
    row it duplicates, rule, score). ``name`` is how the log and errors name ``src`` (its URL, when ``src`` is a
    local copy that is gone once the command ends). Returns the summary the command prints.

    The rows stream through: what stays per row is its given id (a later row may repeat it; a removed row's is
    dropped) and a byte saying whether it is kept, besides what the index keeps of the kept texts. A large file
    (``in_child`` None) is read and prepared in a child process while this one checks: reading, JSON,
    normalising and signing are half the work, and on a thread they would wait for the GIL."""
    cut = len(str(src))  # a row's "file:line" names the copy: the log says name:line instead
    given: list[str | None] = []
    places: deque[str] = deque()  # "file:line" of the rows read (on the Deduper's worker thread) but not decided
    if in_child is None:
        in_child = deduper.embed is None and src.stat().st_size >= _CHILD_BYTES
    if in_child:
        child = _child_chunks(src, (instruction_field, input_field, compare), deduper.preparer, given, places)
        matches = deduper.dedup_chunks(child)
    else:

        def rows() -> Iterator[tuple[str, str]]:
            for i, r in enumerate(read_rows(src, instruction_field=instruction_field, input_field=input_field)):
                given.append(r.given_id)
                places.append(r.where)
                yield str(i), _compared(r, compare)

        ids, texts = tee(rows())  # one pass over the file feeds both; tee holds only the row between them
        matches = deduper.dedup_iter((r[0] for r in ids), (r[1] for r in texts))
    keep = bytearray()  # 1 for a kept row, 0 for a removed one
    counts: Counter[str] = Counter()
    with tempfile.TemporaryFile("w+", encoding="utf-8") as log:  # the removals, until the kept file is whole
        try:
            for i, m in enumerate(matches):
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


_CHILD_BYTES = 32 << 20  # from this size on a child process reads the file: it costs about half a second to start
_ROWS = 4096  # rows a chunk from the child: how texts are chunked never changes what is kept


def _compared(row: SourceRow, compare: str) -> str:
    return row.instruction if compare == "instruction" else f"{row.instruction}\n{row.output or ''}"


def _child_chunks(
    src: Path,
    options: tuple[str | None, str | None, str],
    preparer: Preparer,
    given: list[str | None],
    places: deque[str],
) -> Iterator[Chunk]:
    """The prepared chunks of ``src`` from a child process (``_prepare_in_child``), each row's given id and place
    noted as its chunk comes; the child is stopped if the caller stops early."""
    ctx = multiprocessing.get_context("spawn")  # not fork: the parent may run threads (fsspec's, for a URL)
    ours, theirs = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_prepare_in_child, args=(theirs, src, options, preparer), daemon=True)
    proc.start()
    theirs.close()  # the child's end: closed here, so a child that dies ends our reads with EOFError
    try:
        done = 0
        while True:
            try:
                sent = ours.recv()
            except EOFError:
                proc.join()
                raise RuntimeError(f"the process reading {src} stopped (exit code {proc.exitcode})") from None
            if sent is None:
                return
            if isinstance(sent, str):
                raise InputError(sent)
            chunk, ids, wheres = sent
            given.extend(ids)
            places.extend(wheres)
            chunk.ids = [str(i) for i in range(done, done + len(ids))]
            chunk.lineages = [None] * len(ids)
            done += len(ids)
            yield chunk
    finally:
        ours.close()
        if proc.is_alive():
            proc.kill()
        proc.join()


def _prepare_in_child(conn: Connection, src: Path, options: tuple[str | None, str | None, str], preparer: Preparer):
    """In the child: ``src``'s rows prepared a chunk at a time and sent with their given ids and places; then None,
    or the message of the InputError that stopped the reading."""
    instruction_field, input_field, compare = options
    rows = read_rows(src, instruction_field=instruction_field, input_field=input_field)
    try:
        while batch := list(islice(rows, _ROWS)):
            chunk = preparer([_compared(r, compare) for r in batch])
            chunk.texts = ()  # the index checks the normalised texts only: no need to send these
            conn.send((chunk, [r.given_id for r in batch], [r.where for r in batch]))
        conn.send(None)
    except InputError as exc:
        conn.send(str(exc))
    finally:
        conn.close()


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
