"""A finished (or stopped) run folder read back: its manifest, kept records and rejections.

What ``export``, ``report`` and ``score`` read a run through, so each reads it the same way.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError
from .rundir import MANIFEST, RECORDS, REJECTED, read_jsonl

log = logging.getLogger("evol")


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
        return str(
            (self.manifest.get("profile") or {}).get("name") or (self.manifest.get("config") or {}).get("profile", "")
        )

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
