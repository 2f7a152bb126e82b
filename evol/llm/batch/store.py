"""The Batch API's ledger in the run's ``calls.sqlite``: which file and batch each call went out in, so a restarted
run waits for a batch an earlier process submitted instead of paying for its calls again."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

from evol.llm.cache import CallCache


@dataclass(frozen=True)
class Submission:
    """One batch input file and, once created, its batch."""

    file_id: str
    batch_id: str | None
    model: str
    status: str  # submitting (file uploaded, batch maybe created), submitted, not_created, or the batch's final status
    requests: int
    created: float


class BatchStore:
    """Submitted batches and the calls they hold, in the run's ``calls.sqlite``."""

    def __init__(self, cache: CallCache):
        self._db = sqlite3.connect(cache.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS batches (file_id TEXT PRIMARY KEY, batch_id TEXT, model TEXT NOT NULL,"
            " status TEXT NOT NULL, requests INTEGER NOT NULL, created REAL NOT NULL, updated REAL NOT NULL)"
        )
        # a call's latest submission; a resubmitted call moves to its new file, the old row keeps the history
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS batch_calls (key BLOB PRIMARY KEY, file_id TEXT NOT NULL) WITHOUT ROWID"
        )

    def add_file(self, file_id: str, model: str, keys: list[bytes]) -> None:
        now = time.time()
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute(
                "INSERT INTO batches VALUES (?,?,?,?,?,?,?)", (file_id, None, model, "submitting", len(keys), now, now)
            )
            self._db.executemany("INSERT OR REPLACE INTO batch_calls VALUES (?,?)", ((k, file_id) for k in keys))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def set(self, file_id: str, status: str, batch_id: str | None = None) -> None:
        self._db.execute(
            "UPDATE batches SET status=?, batch_id=coalesce(?, batch_id), updated=? WHERE file_id=?",
            (status, batch_id, time.time(), file_id),
        )

    def with_status(self, status: str) -> list[Submission]:
        rows = self._db.execute("SELECT * FROM batches WHERE status=? ORDER BY created", (status,)).fetchall()
        return [Submission(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]

    def submission_of(self, key: bytes) -> Submission | None:
        r = self._db.execute(
            "SELECT b.* FROM batch_calls c JOIN batches b USING (file_id) WHERE c.key=?", (key,)
        ).fetchone()
        return Submission(r[0], r[1], r[2], r[3], r[4], r[5]) if r else None

    def all(self) -> list[Submission]:
        rows = self._db.execute("SELECT * FROM batches ORDER BY created").fetchall()
        return [Submission(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]

    def close(self) -> None:
        self._db.close()
