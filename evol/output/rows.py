"""Which kept rows of finished runs an export takes: the row type, the filters, and runs merged without duplicates."""

from __future__ import annotations

import dataclasses
import os
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic_core import from_json

from evol.errors import ConfigError, InputError
from evol.models import History, Record, Rejection, asked
from evol.rundir.files import read_at, scan_jsonl
from evol.rundir.folder import RECORDS, REJECTED
from evol.rundir.reader import Run
from evol.text import normalize, whitespace_word_count


@dataclass(frozen=True)
class RowFilter:
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
    history: History = ()  # a conversation's turns before the instruction

    def meta(self, scored: bool = False, turns: bool = False) -> dict[str, Any]:
        """The lineage row; ``turns``: with a ``history`` column of the earlier turns (every row, when any has one)."""
        out: dict[str, Any] = {
            "instruction": self.instruction,
            "output": self.output,
            "id": self.id,
            "seed_id": self.seed_id,
            "round": self.round,
            "operation": self.operation,
            "run_id": self.run_id,
        }
        if turns:
            out["history"] = [t.model_dump() for t in self.history]
        return out | {"complexity": self.complexity, "quality": self.quality} if scored else out


@dataclass
class Picked:
    rows: list[Row]
    runs: list[Run]  # the runs that contributed (after the profile filter)
    dropped: Counter[str]  # reason -> rows left out


def _check_options(sel: RowFilter) -> None:
    """Options that contradict each other are errors, not empty files."""
    if sel.min_words is not None and sel.max_words is not None and sel.min_words > sel.max_words:
        raise ConfigError(f"--min-words {sel.min_words} is more than --max-words {sel.max_words}.")
    if sel.rounds is not None and any(r < 0 for r in sel.rounds):
        raise ConfigError("--round takes round numbers from 0 (the seeds) up.")
    if sel.seeds is False and sel.rounds is not None and 0 in sel.rounds:
        raise ConfigError("--round 0 selects the seeds, which --no-seeds leaves out; drop one of the two.")


def _check_against(sel: RowFilter, runs: list[Run], operations: set[str], seeds: bool) -> None:
    """Options that name nothing in these runs are errors too: ``operations`` of their records, ``seeds`` whether
    any is a seed row."""
    if sel.operations:
        known = {"seed"} | {op for run in runs for op in run.manifest.profile.operations} | operations
        unknown = sorted(sel.operations - known)
        if unknown:
            raise ConfigError(
                f"--operation {', '.join(unknown)} is not an operation of these runs; they have {', '.join(sorted(known))}."
            )
    if sel.seeds and not seeds:
        raise ConfigError(
            "--include-seeds: these runs left the seeds out (--no-seeds); run them again without --no-seeds "
            "(the evolutions come from the call cache, only the seed answers are new)."
        )


@dataclass
class Table:
    """The rows an export picked, compact (numpy columns of what choosing by score reads), with where each row's
    line is in its run's records.jsonl: :meth:`rows` reads the few rows chosen again, whole. A million
    pydantic Records and Rows took gigabytes; this takes tens of bytes a row and the ids."""

    runs: list[Run]  # the runs that contributed (after the profile filter)
    dropped: Counter[str]  # reason -> rows left out
    run: np.ndarray  # index in ``runs``
    offset: np.ndarray  # the row's line in its run's records.jsonl: byte offset and length
    size: np.ndarray
    round: np.ndarray
    operation: np.ndarray  # index in ``operations``
    operations: list[str]
    ids: list[str]

    def __len__(self) -> int:
        return len(self.ids)

    def run_id(self, i: int) -> str:
        return self.runs[int(self.run[i])].run_id

    @contextmanager
    def _lines(self) -> Iterator[Callable[[int], str]]:
        fds = [os.open(run.path / RECORDS, os.O_RDONLY) for run in self.runs]
        try:
            yield lambda i: read_at(fds[self.run[i]], int(self.offset[i]), int(self.size[i]))
        finally:
            for fd in fds:
                os.close(fd)

    def rows(self, at: Iterable[int]) -> list[Row]:
        """The rows at these positions, read again from their lines."""
        with self._lines() as line:
            return [_row(self.run_id(i), Record.model_validate_json(line(i))) for i in at]

    def instructions(self, at: Iterable[int]) -> Iterator[str]:
        """The instructions of the rows at these positions, in order, read as they are asked for."""
        with self._lines() as line:
            for i in at:
                yield from_json(line(i))["instruction"]


def pick_rows(runs: list[Run], sel: RowFilter) -> Picked:
    """The rows to export, in run order then file order; the first copy of an instruction wins across runs."""
    table, rows = _pick(runs, sel, keep=True)
    assert rows is not None
    return Picked(rows=rows, runs=table.runs, dropped=table.dropped)


def pick_table(runs: list[Run], sel: RowFilter) -> Table:
    """:func:`pick_rows` as a :class:`Table`: records.jsonl read a line at a time, nothing of a row kept but its
    columns."""
    return _pick(runs, sel, keep=False)[0]


def _pick(runs: list[Run], sel: RowFilter, keep: bool) -> tuple[Table, list[Row] | None]:
    _check_options(sel)
    found = sorted({r.profile for r in runs})
    run_no = array("i")
    offsets, sizes, rounds, ops = array("q"), array("i"), array("q"), array("i")
    hashes = array("q")  # of what is left of the text dedup compares when normalised (_letters, _duplicates)
    ids: list[str] = []
    rows: list[Row] = []
    codes: dict[str, int] = {}
    operations: set[str] = set()
    seeds = False
    dropped: Counter[str] = Counter()  # reason -> rows left out
    chosen: list[Run] = []
    for run in runs:
        if sel.profiles is not None and run.profile not in sel.profiles:
            if not keep:  # every named run's file is read, as load_run reads it: a broken line is an error
                for _ in scan_jsonl(run.path / RECORDS, Record.model_validate_json):
                    pass
            continue
        n = len(chosen)
        chosen.append(run)
        records = (
            ((0, 0, rec) for rec in run.records) if keep else scan_jsonl(run.path / RECORDS, Record.model_validate_json)
        )
        for offset, size, rec in records:
            operations.add(rec.operation)
            seeds = seeds or rec.round == 0
            reason = _excluded(rec, sel)
            if reason:
                dropped[reason] += 1
                continue
            run_no.append(n)
            offsets.append(offset)
            sizes.append(size)
            rounds.append(rec.round)
            ops.append(codes.setdefault(rec.operation, len(codes)))
            ids.append(rec.id)
            hashes.append(hash(_letters(asked(rec.history, rec.instruction))))
            if keep:
                rows.append(_row(run.run_id, rec))
        if not keep and (run.path / REJECTED).is_file():  # read as load_run reads it: a broken line is an error
            for _ in scan_jsonl(run.path / REJECTED, Rejection.model_validate_json):
                pass
    if sel.profiles is not None and not chosen:
        raise ConfigError(
            f"--profile {', '.join(sorted(sel.profiles))} matches none of these runs; their profiles: {', '.join(found)}."
        )
    _check_against(sel, chosen, operations, seeds)
    table = Table(
        runs=chosen,
        dropped=dropped,
        run=np.frombuffer(run_no, np.int32),
        offset=np.frombuffer(offsets, np.int64),
        size=np.frombuffer(sizes, np.int32),
        round=np.frombuffer(rounds, np.int64),
        operation=np.frombuffer(ops, np.int32),
        operations=list(codes),
        ids=ids,
    )
    dup = _duplicates(np.frombuffer(hashes, np.int64), lambda at: [rows[i] for i in at] if keep else table.rows(at))
    if dup.any():
        dropped["duplicate across runs"] += int(dup.sum())
        kept = np.flatnonzero(~dup)
        table = dataclasses.replace(
            table,
            run=table.run[kept],
            offset=table.offset[kept],
            size=table.size[kept],
            round=table.round[kept],
            operation=table.operation[kept],
            ids=[ids[i] for i in kept.tolist()],
        )
        rows = [rows[i] for i in kept.tolist()] if keep else rows
    if not len(table) and not dropped:
        raise InputError(f"{', '.join(str(r.path) for r in chosen)} kept no rows; there is nothing to export.")
    if not len(table):
        raise ConfigError(f"The selection leaves no rows to export ({reasons(dropped)}); loosen it.")
    return table, rows if keep else None


_ASCII_DROP = bytes(b for b in range(128) if not chr(b).isalnum())  # what _letters drops of ASCII text


def _letters(text: str) -> bytes:
    """The letters and digits of ``normalize(text)``, in order: the same for texts that normalise the same (its
    words' characters are every letter and digit of the casefolded text, and only they are not spaces and
    apostrophes), and ten times faster than normalising on ASCII text, so a million texts are hashed in a
    second; the few with equal hashes are normalised to decide (_duplicates)."""
    if text.isascii():
        return text.lower().encode().translate(None, _ASCII_DROP)
    return normalize(text).replace(" ", "").replace("'", "").encode()


def _duplicates(hashes: np.ndarray, rows_at: Callable[[list[int]], list[Row]]) -> np.ndarray:
    """Which rows repeat an earlier row's normalised text (dedup's exact match: the run already removed near
    duplicates within itself). Hashes of the texts' letters find the few rows that may; their normalised texts,
    read again, decide."""
    dup = np.zeros(hashes.size, bool)
    order = np.argsort(hashes, kind="stable")  # equal hashes stay in row order
    ordered = hashes[order]
    same = ordered[1:] == ordered[:-1]
    if not same.any():
        return dup
    shared = np.zeros(hashes.size, bool)
    shared[1:] |= same
    shared[:-1] |= same
    members, keys = order[shared].tolist(), ordered[shared]
    texts = {i: normalize(asked(r.history, r.instruction)) for i, r in zip(members, rows_at(members), strict=True)}
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]).tolist()
    for a, b in zip(starts, [*starts[1:], len(members)], strict=True):
        earlier: set[str] = set()
        for i in members[a:b]:  # in row order
            dup[i] = texts[i] in earlier
            earlier.add(texts[i])
    return dup


def _row(run_id: str, rec: Record) -> Row:
    return Row(
        instruction=rec.instruction,
        output=rec.output,
        id=rec.id,
        seed_id=rec.seed_id,
        round=rec.round,
        operation=rec.operation,
        run_id=run_id,
        history=rec.history,
    )


def _excluded(rec: Record, sel: RowFilter) -> str | None:
    rnd = rec.round
    if sel.seeds is False and rnd == 0:
        return "seed row (--no-seeds)"
    if sel.rounds is not None and rnd not in sel.rounds and not (sel.seeds and rnd == 0):
        return "round not selected"
    if sel.operations is not None and rec.operation not in sel.operations and not (sel.seeds and rnd == 0):
        return "operation not selected"
    if sel.min_words is None and sel.max_words is None:
        return None  # counting every row's words took a second a million rows for nothing
    n = whitespace_word_count(rec.instruction)
    if sel.min_words is not None and n < sel.min_words:
        return "instruction shorter than --min-words"
    if sel.max_words is not None and n > sel.max_words:
        return "instruction longer than --max-words"
    return None


def reasons(dropped: Counter) -> str:
    """Counts of rows left out, by why: "3 round not selected, 1 duplicate across runs"."""
    return ", ".join(f"{n} {why}" for why, n in dropped.most_common())
