"""A finished (or stopped) run folder read back: its manifest, kept records and rejections.

What ``export``, ``report`` and ``score`` read a run through, so each reads it the same way.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from evol.errors import InputError
from evol.models import Record, Rejection
from evol.rundir.files import parse_jsonl
from evol.rundir.folder import MANIFEST, RECORDS, REJECTED
from evol.rundir.manifest import Counts, Manifest, load_manifest

log = logging.getLogger("evol")


@dataclass
class Run:
    """A run directory as written by ``python -m evol run``; its records and rejections are read when first asked
    for (an export that chooses by score reads records.jsonl a line at a time instead: evol.output.rows)."""

    path: Path
    manifest: Manifest

    @cached_property
    def records(self) -> list[Record]:
        return parse_jsonl(self.path / RECORDS, Record.model_validate_json)

    @cached_property
    def rejected(self) -> list[Rejection]:
        file = self.path / REJECTED
        return parse_jsonl(file, Rejection.model_validate_json) if file.is_file() else []

    @property
    def run_id(self) -> str:
        return self.manifest.run_id or self.path.name

    @property
    def profile(self) -> str:
        return self.manifest.profile.name or self.manifest.settings.profile

    @property
    def counts(self) -> Counts:
        return self.manifest.counts


def load_run(path: Path, read: bool = True) -> Run:
    """Read a run directory's manifest, kept records and rejections; InputError if it is not one. ``read=False``
    leaves the records and rejections to be read when first used."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path} is not a folder; pass the run folder that 'python -m evol run' wrote.")
    for name in (MANIFEST, RECORDS):
        if not (path / name).is_file():
            raise InputError(f"{path} has no {name}; is it a run folder of 'python -m evol run'?")
    manifest = load_manifest(path / MANIFEST)
    run = Run(path=path, manifest=manifest)
    if read:
        run.records, run.rejected  # noqa: B018 - read now: a broken line stops the command before it starts work
    if manifest.status != "complete":
        log.warning("%s: run status is '%s', not complete; using what it has so far", path, manifest.status or None)
    return run


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
