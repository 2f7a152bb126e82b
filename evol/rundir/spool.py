"""Each settled round on disk, so a run holds one round of records in memory, not all of them.

A round's records, rejections and dataset rows go to files of their own in the run folder's ``.rounds``,
each outcome as soon as it is settled, renamed into place when the round ends; ``records.jsonl``,
``rejected.jsonl`` and ``dataset.json`` are those files joined in round order, copied without parsing. What the manifest counts is added up as the rounds go by
(:class:`Totals`). At 100,000 seeds the kept records were about 3 KB per seed per round of resident memory.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from evol.models import Record, Rejection, alpaca_row
from evol.rundir.files import AtomicFile, jsonl_line
from evol.rundir.folder import SPOOL, RunDir

_BLOCK = 1 << 20


class Spool:
    """The run folder's ``.rounds``: ``<round>.records.jsonl``, ``<round>.rejected.jsonl``, ``<round>.dataset``."""

    def __init__(self, run_dir: RunDir):
        self.path = run_dir / SPOOL  # refuses a planted link that leads out of the run folder
        self.rounds: list[int] = []

    def reset(self) -> None:
        """Start empty: a run rebuilds every round (from the call cache when it resumes)."""
        self.remove()
        self.path.mkdir(parents=True, exist_ok=True)
        self.rounds = []

    def remove(self) -> None:
        if self.path.is_symlink() or self.path.is_file():
            self.path.unlink()
        elif self.path.exists():
            shutil.rmtree(self.path)

    def round(self, round_no: int) -> RoundWriter:
        """A writer for one round's files, filled outcome by outcome as the round settles."""
        return RoundWriter(self, round_no)

    def put(self, round_no: int, records: Sequence[Record], rejections: Sequence[Rejection]) -> None:
        """Write one round at once (again, for round 0 once its seeds are answered), each file whole or absent."""
        writer = self.round(round_no)
        outcomes: list[Record | Rejection] = [*records, *rejections]
        try:
            for out in outcomes:
                writer.add(out)
        except BaseException:
            writer.discard()
            raise
        writer.commit()

    def lines(self, kind: str) -> Iterator[str]:
        """A JSONL output (``records`` or ``rejected``): every round's file in turn, in blocks."""
        for n in self.rounds:
            yield from self._blocks(self._file(n, kind))

    def dataset(self) -> Iterator[str]:
        """dataset.json exactly as ``json.dumps(rows, ensure_ascii=False, indent=2)`` and a newline."""
        first = True
        for n in self.rounds:
            path = self._file(n, "dataset")
            if path.stat().st_size == 0:
                continue
            yield "[\n" if first else ",\n"
            first = False
            yield from self._blocks(path)
        yield "[]\n" if first else "\n]\n"

    def _file(self, round_no: int, kind: str) -> Path:
        suffix = {"records": "records.jsonl", "rejected": "rejected.jsonl", "dataset": "dataset"}[kind]
        return self.path / f"{round_no}.{suffix}"

    @staticmethod
    def _blocks(path: Path) -> Iterator[str]:
        with open(path, encoding="utf-8") as f:
            while block := f.read(_BLOCK):
                yield block


class RoundWriter:
    """One round's three files, written as its outcomes settle (in seed order) and renamed into place together."""

    def __init__(self, spool: Spool, round_no: int):
        self.spool, self.round_no = spool, round_no
        self._files = {kind: AtomicFile(spool._file(round_no, kind)) for kind in ("records", "rejected", "dataset")}
        self._rows = 0

    def add(self, out: Record | Rejection) -> None:
        if isinstance(out, Record):
            self._files["records"].write(jsonl_line(out))
            # dataset.json's items as json.dumps(rows, indent=2) writes them: each row indented one level more
            row = alpaca_row(out.instruction, out.output, out.history)
            item = json.dumps(row, ensure_ascii=False, indent=2)
            self._files["dataset"].write(("  " if not self._rows else ",\n  ") + item.replace("\n", "\n  "))
            self._rows += 1
        else:
            self._files["rejected"].write(jsonl_line(out))

    def commit(self) -> None:
        try:
            for f in self._files.values():
                f.commit()
        except BaseException:
            self.discard()
            raise
        if self.round_no not in self.spool.rounds:
            self.spool.rounds = sorted([*self.spool.rounds, self.round_no])

    def discard(self) -> None:
        for f in self._files.values():
            with contextlib.suppress(OSError, ValueError):
                f.discard()


@dataclass
class Totals:
    """What the manifest says about the outcomes, added up round by round instead of recounted from them."""

    by_round: dict[int, Counter] = field(default_factory=dict)  # rounds >= 1: kept / eliminated / duplicate / failed
    by_operation: dict[str, Counter] = field(default_factory=dict)  # rounds >= 1: attempts, kept and the kinds
    by_rule: Counter = field(default_factory=Counter)  # every rejection, seeds and skipped ones included
    by_reason: Counter = field(default_factory=Counter)  # (stage, kind, rule) of every rejection
    seeds_with_kept: set[str] = field(default_factory=set)
    seed_records: int = 0
    seed_rejections: int = 0  # answered seeds the checks refused (skipped seeds are not among them)
    # judged, unclear (first answers), resolved_by_retry, unclear_after_retry
    judge: Counter = field(default_factory=Counter)

    def add(self, outcomes: Iterable[Record | Rejection]) -> None:
        for out in outcomes:
            if out.judge is not None:
                self.judge["judged"] += 1
                if out.judge.answers[0].judgement == "unclear":
                    self.judge["unclear"] += 1
                    self.judge["unclear_after_retry" if out.judge.judgement == "unclear" else "resolved_by_retry"] += 1
            if isinstance(out, Rejection):
                self.by_rule[out.rule] += 1
                self.by_reason[out.stage, out.kind, out.rule] += 1
            if out.round == 0:
                if isinstance(out, Record):
                    self.seed_records += 1
                elif out.kind != "skipped":
                    self.seed_rejections += 1
                continue
            what = "kept" if isinstance(out, Record) else out.kind
            self.by_round.setdefault(out.round, Counter())[what] += 1
            ops = self.by_operation.setdefault(out.operation, Counter())
            ops["attempts"] += 1
            ops[what] += 1
            if isinstance(out, Record):
                self.seeds_with_kept.add(out.seed_id)

    def merge(self, other: Totals) -> None:
        for n, c in other.by_round.items():
            self.by_round.setdefault(n, Counter()).update(c)
        for op, c in other.by_operation.items():
            self.by_operation.setdefault(op, Counter()).update(c)
        self.by_rule.update(other.by_rule)
        self.by_reason.update(other.by_reason)
        self.judge.update(other.judge)
        self.seeds_with_kept |= other.seeds_with_kept
        self.seed_records += other.seed_records
        self.seed_rejections += other.seed_rejections

    def count(self, what: str) -> int:
        """Attempts of rounds >= 1 that ended as ``what`` ("kept", "eliminated", "duplicate", "failed")."""
        return sum(c[what] for c in self.by_round.values())


class RoundSink:
    """Where one round's settled outcomes go: its files and its own totals, taken into the run only if it ends."""

    def __init__(self, spool: Spool, round_no: int):
        self.writer = spool.round(round_no)
        self.totals = Totals()

    def __call__(self, out: Record | Rejection) -> None:
        self.writer.add(out)
        self.totals.add((out,))
