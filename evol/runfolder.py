"""A finished (or stopped) run folder read back: its manifest, kept records and rejections.

What ``export``, ``report`` and ``score`` read a run through, so each reads it the same way.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from pydantic import ValidationError

from .errors import InputError
from .manifest import Counts, Manifest, load_manifest
from .models import Record, Rejection
from .rundir import MANIFEST, RECORDS, REJECTED

Row = TypeVar("Row", Record, Rejection)

log = logging.getLogger("evol")


@dataclass
class Run:
    """A run directory as written by ``python -m evol run``."""

    path: Path
    manifest: Manifest
    records: list[Record]
    rejected: list[Rejection] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return self.manifest.run_id or self.path.name

    @property
    def profile(self) -> str:
        return self.manifest.profile.name or self.manifest.settings.profile

    @property
    def counts(self) -> Counts:
        return self.manifest.counts


def load_run(path: Path) -> Run:
    """Read a run directory's manifest, kept records and rejections; InputError if it is not one."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path} is not a folder; pass the run folder that 'python -m evol run' wrote.")
    for name in (MANIFEST, RECORDS):
        if not (path / name).is_file():
            raise InputError(f"{path} has no {name}; is it a run folder of 'python -m evol run'?")
    manifest = load_manifest(path / MANIFEST)
    records = read_rows(path / RECORDS, Record)
    rejected = read_rows(path / REJECTED, Rejection) if (path / REJECTED).is_file() else []
    if manifest.status != "complete":
        log.warning("%s: run status is '%s', not complete; using what it has so far", path, manifest.status or None)
    return Run(path=path, manifest=manifest, records=records, rejected=rejected)


def read_rows(path: Path, model: type[Row]) -> list[Row]:
    """A records.jsonl or rejected.jsonl read as its model, one per non-blank line; a broken line, a row that
    is not such an entry, or a file that is not UTF-8 is an InputError naming it."""
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rows.append(model.model_validate_json(line))
                    except ValidationError as exc:
                        raise InputError(_bad_row(path, n, line, exc)) from None
    except UnicodeDecodeError:
        raise InputError(f"{path} is not UTF-8 text.") from None
    return rows


def _bad_row(path: Path, n: int, line: str, exc: ValidationError) -> str:
    """The one sentence for a line the model refused: broken JSON as rundir.read_jsonl words it, else the first
    field at fault."""
    try:
        json.loads(line)  # only on this error path: the message json gives, the one a broken line always had
    except json.JSONDecodeError as bad:
        return f"{path}:{n} is not valid JSON ({bad.msg})."
    first = exc.errors()[0]
    where = ".".join(map(str, first["loc"])) or "the row"
    more = f" and {exc.error_count() - 1} more" if exc.error_count() > 1 else ""
    return f"{path}:{n} is not a row evol run writes ({where}: {first['msg']}{more})."


def word_count(text: str) -> int:
    """Whitespace-separated words: what the length options and the report's length plots count."""
    return len(text.split())


def funnel(run: Run) -> list[tuple[str, str, int]]:
    """(label, kind, count) from seeds to kept: candidates per round, then every rule that removed some.

    Kinds: ``seeds``, ``candidates``, ``eliminated``, ``duplicate``, ``failed``, ``kept``.
    """
    c, by_round = run.counts, run.manifest.by_round
    rows: list[tuple[str, str, int]] = [("Seeds", "seeds", c.seeds)]
    for n in sorted(by_round, key=int):
        rows.append((f"Candidates, round {n}", "candidates", by_round[n].attempts))
    rules = Counter((r.kind, r.rule) for r in run.rejected if r.round > 0)
    order = {"eliminated": 0, "duplicate": 1, "failed": 2}
    for (kind, rule), count in sorted(rules.items(), key=lambda kv: (order.get(kv[0][0], 3), -kv[1], kv[0][1])):
        rows.append((rule, kind, count))
    rows.append(("Kept", "kept", c.kept))
    return rows
