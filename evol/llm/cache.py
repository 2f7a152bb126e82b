"""A durable cache of LLM answers in the run directory: no completed call is ever paid for twice.

SQLite in WAL mode: each answer is committed as it arrives, a ``kill -9`` loses at most the calls still in
flight, lookups by key stay well under 0.1 ms at a million rows, and several processes can share it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from evol.config import Sampling
from evol.llm.client import ChatModel, Messages
from evol.models import Completion, Usage
from evol.rundir.folder import CACHE

if TYPE_CHECKING:
    from evol.rundir.folder import RunDir
    from evol.rundir.shards import Shards


def call_key(identity: str, model: str, messages: Messages, sampling: Sampling, sample: str) -> bytes:
    """What makes two calls the same call: endpoint identity, model, messages, sampling and sample id."""
    blob = json.dumps(
        [identity, model, messages, sampling.model_dump(), sample],
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode("utf-8")).digest()[:20]


class CallCache:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a committed answer survives the process being killed (not a power cut)
        self._db.execute("PRAGMA synchronous=NORMAL")
        # A rowid table with a unique index on the key, not WITHOUT ROWID: answers are often longer than the
        # ~500 bytes a WITHOUT ROWID row keeps in its page, and each spilled into an overflow page of its own
        # (4.5 KB on disk per 1 KB answer, and a lookup read several pages). At a million 1 KB answers this
        # schema is 3x smaller on disk and a lookup ~15 µs instead of ~40 µs (p99 ~30 µs instead of >1 ms;
        # ``python -m bench.cache``). Files made with the old schema are read and written the same way.
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS calls (key BLOB NOT NULL UNIQUE, text TEXT NOT NULL, finish_reason TEXT,"
            " prompt_tokens INTEGER, completion_tokens INTEGER, model TEXT)"
        )
        self._lock = threading.Lock()

    def get(self, key: bytes) -> Completion | None:
        with self._lock:
            row = self._db.execute(
                "SELECT text, finish_reason, prompt_tokens, completion_tokens, model FROM calls WHERE key=?", (key,)
            ).fetchone()
        if row is None:
            return None
        return Completion(
            text=row[0],
            finish_reason=row[1],
            usage=Usage(prompt_tokens=row[2], completion_tokens=row[3]),
            model=row[4],
            cached=True,
        )

    def put(self, key: bytes, c: Completion) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO calls VALUES (?,?,?,?,?,?)",
                (key, c.text, c.finish_reason, c.usage.prompt_tokens, c.usage.completion_tokens, c.model),
            )

    async def aput(self, key: bytes, c: Completion) -> None:
        """``put`` from a coroutine: a local SQLite commit is quick enough to make on the event loop."""
        self.put(key, c)

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT count(*) FROM calls").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class ShardedCache(CallCache):
    """The call cache of a run folder at a URL: every answer goes to this writer's shard there before it is
    used, and a local SQLite file (in this process's own temporary folder) answers the lookups, filled from
    every shard when it opens (``evol.rundir.shards``)."""

    def __init__(self, path: Path, shards: Shards, *, shared: bool = False):
        super().__init__(path)
        self.shards = shards
        # shared: other processes write the same run's shards meanwhile (Dask workers), so a miss asks the store
        self.shared = shared
        rows = (
            (key, r["text"], r.get("finish_reason"), r.get("prompt_tokens"), r.get("completion_tokens"), r.get("model"))
            for key, r in shards.rows()
        )
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO calls VALUES (?,?,?,?,?,?)", rows)
            self._db.execute("COMMIT")

    def get(self, key: bytes) -> Completion | None:
        hit = super().get(key)
        if hit is None and self.shared and (row := self.shards.get(key)) is not None:
            hit = _completion(row)
            super().put(key, hit)
        return hit

    def put(self, key: bytes, c: Completion) -> None:
        row = {
            "text": c.text,
            "finish_reason": c.finish_reason,
            "prompt_tokens": c.usage.prompt_tokens,
            "completion_tokens": c.usage.completion_tokens,
            "model": c.model,
        }
        self.shards.add(key, row)  # in the store first: a process killed after this never pays for it again
        super().put(key, c)

    async def aput(self, key: bytes, c: Completion) -> None:
        # an object store's round trip takes milliseconds: on a thread, so the calls in flight go on meanwhile
        await asyncio.to_thread(self.put, key, c)


def _completion(row: dict) -> Completion:
    usage = Usage(prompt_tokens=row.get("prompt_tokens") or 0, completion_tokens=row.get("completion_tokens") or 0)
    return Completion(
        text=row["text"], finish_reason=row.get("finish_reason"), usage=usage, model=row["model"], cached=True
    )


def open_cache(run_dir: RunDir) -> CallCache:
    """The run folder's call cache: ``calls.sqlite`` in a local folder, shards at a URL."""
    if run_dir.remote is None:
        return CallCache(run_dir / CACHE)
    from evol.rundir.shards import Shards

    return ShardedCache(run_dir / CACHE, Shards(run_dir.remote))


class CachedChat:
    """Wraps a ChatModel: answers from the cache when it can, stores every new answer before returning it."""

    def __init__(self, inner: ChatModel, cache: CallCache):
        self.inner = inner
        self.cache = cache
        self.identity = inner.identity
        self.hits = 0
        self.misses = 0

    async def complete(self, messages: Messages, *, model: str, sampling: Sampling, sample: str) -> Completion:
        key = call_key(self.identity, model, messages, sampling, sample)
        hit = self.cache.get(key)
        if hit is not None:
            self.hits += 1
            return hit
        self.misses += 1
        answer = await self.inner.complete(messages, model=model, sampling=sampling, sample=sample)
        await self.cache.aput(key, answer)
        return answer

    async def aclose(self) -> None:
        await self.inner.aclose()
