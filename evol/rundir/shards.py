"""The call cache of a run folder at a URL, as shards: no SQLite on a shared disk, no writer waiting for another.

Each process that pays for calls (the run's own, or a Dask worker) writes every answer as one small object,
``calls/<key>.json`` (the writer named inside), before the answer is used: an object is whole or absent, so a
``kill -9`` of any process loses at most the calls it had in flight. Named by its key, an answer another
process paid for in this round can be looked up on a miss (a chunk moved to another worker after a kill). When a round settles, the lock holder
merges the loose objects into one ``calls/merged-<id>.jsonl`` (written before the loose ones are removed, so
a crash between the two only leaves an answer twice). A run that resumes, on any host, reads every shard.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Iterator
from typing import Any

from evol.rundir.store import Remote

CALLS = "calls"  # in a run folder at a URL: the call cache's shards
_MERGED = "merged-"
_BATCH = 500  # loose objects fetched at once


def writer_id() -> str:
    """A name no other process of any host takes: host, pid and a random part."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class Shards:
    """The ``calls/`` folder of a run at a URL."""

    def __init__(self, remote: Remote, writer: str | None = None):
        self.remote = remote
        self.writer = writer or writer_id()

    def add(self, key: bytes, row: dict[str, Any]) -> None:
        """One answer, as an object of this writer's own folder."""
        data = json.dumps({"key": key.hex(), "by": self.writer, **row}, ensure_ascii=False).encode("utf-8")
        self.remote.write(f"{CALLS}/{key.hex()}.json", data)

    def get(self, key: bytes) -> dict[str, Any] | None:
        """The loose answer of this key, if some process wrote it since the last merge."""
        try:
            return _parsed(self.remote.read(f"{CALLS}/{key.hex()}.json"))[1]
        except FileNotFoundError:
            return None

    def rows(self) -> Iterator[tuple[bytes, dict[str, Any]]]:
        """Every answer of every shard: the merged files, then the loose objects."""
        names = self.remote.names(CALLS)
        merged = [n for n in names if n.rsplit("/", 1)[-1].startswith(_MERGED)]
        loose = [n for n in names if _loose(n)]
        for name in merged:
            for line in self.remote.read(name).decode("utf-8").splitlines():
                if line.strip():
                    yield _parsed(line.encode("utf-8"))
        for i in range(0, len(loose), _BATCH):
            for data in self.remote.read_many(loose[i : i + _BATCH]).values():
                yield _parsed(data)

    def merge(self) -> int:
        """The loose objects of every writer into one merged file, then removed; returns how many went in.
        Only the run folder's lock holder merges; writers still running add new loose objects meanwhile."""
        names = self.remote.names(CALLS)
        loose = [n for n in names if _loose(n)]
        if not loose:
            return 0
        lines: list[bytes] = []
        for i in range(0, len(loose), _BATCH):
            lines.extend(data.rstrip(b"\n") + b"\n" for data in self.remote.read_many(loose[i : i + _BATCH]).values())
        self.remote.write(f"{CALLS}/{_MERGED}{uuid.uuid4().hex}.jsonl", b"".join(lines))
        self.remote.remove(loose)
        return len(loose)


def _loose(name: str) -> bool:
    return name.endswith(".json") and name.count("/") == 1


def _parsed(data: bytes) -> tuple[bytes, dict[str, Any]]:
    row = json.loads(data)
    row.pop("by", None)
    return bytes.fromhex(row.pop("key")), row
