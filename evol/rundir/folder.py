"""The run folder: what its files are called, and one writer at a time (a lock the kernel drops with its holder)."""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from pathlib import Path

from evol.errors import ConfigError, RunLockedError
from evol.rundir.shards import Shards
from evol.rundir.store import Remote, local_or_url, open_checked, scheme_of

DATASET = "dataset.json"
RECORDS = "records.jsonl"
REJECTED = "rejected.jsonl"
MANIFEST = "manifest.json"
CACHE = "calls.sqlite"
SCORES = "scores.jsonl"  # evol score: complexity and quality per kept row (evol.quality.scoring)
OPTIMIZE = "optimize.json"  # what an ``evol optimize`` folder holds instead of a manifest
PROMPTS = "prompts"  # ... and the optimized profile
SPOOL = ".rounds"  # settled rounds while a run lasts (evol.rundir.spool)
LOCK = ".lock"


class RunDir:
    """A run's folder, locked for as long as this object is open.

    The lock is an ``flock``: the kernel drops it when the holder dies, so a killed run never leaves a
    stale lock behind and the next run simply takes over.

    At a URL (``s3://bucket/run``) the store is reached now, before anything is paid for; the run works in a
    local folder of its own (``path``) and ``publish`` copies each finished file to the URL (``where``). The
    lock then guards that local folder only: two hosts must not be given the same URL at once.
    """

    def __init__(self, path: Path | str):
        where = local_or_url(path)
        self.remote: Remote | None = None
        if scheme_of(where) is not None:
            self.remote = open_checked(where, write=True)
            self.path = Path(tempfile.mkdtemp(prefix="evol-run-"))
        else:
            self.path = Path(where)
        self.where = where if self.remote is not None else str(self.path)  # what the manifest and the log say
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"Output path {self.path} exists and is not a folder.")
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock_fd: int | None = None

    def __truediv__(self, name: str) -> Path:
        target = (self.path / name).resolve()
        if self.path.resolve() not in (target, *target.parents):
            raise ConfigError(f"'{name}' would write outside the run folder {self.path}.")
        return target

    def lock(self) -> RunDir:
        try:  # never through a symlink: the pid written below would overwrite whatever it points at
            fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise ConfigError(
                f"Cannot open the lock file {self.path / LOCK} ({exc.strerror}); "
                f"remove it if it is a link, or choose another --out."
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunLockedError(
                f"Another evol process is writing into {self.path}; wait for it to finish or choose another --out."
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd
        # half-written temporary files of a run that was killed mid-write: only the lock holder may remove them
        for leftover in self.path.rglob(".*.tmp"):
            if leftover.is_file() and not leftover.is_symlink():
                leftover.unlink(missing_ok=True)
        try:  # an output planted as a link to elsewhere is refused now, before any work is paid for
            for name in (DATASET, RECORDS, REJECTED, MANIFEST, CACHE, SPOOL):
                self / name
        except ConfigError:
            self.unlock()
            raise
        return self

    def publish(self, *names: str) -> None:
        """At a URL, copy these finished files of the local folder there, in this order (the manifest last);
        nothing to do for a local folder."""
        if self.remote is not None:
            self.remote.push(self.path, names)

    def settle(self) -> None:
        """At a URL, the call cache's loose shards (one object per answer) into one merged file; only the lock
        holder does it, once a round's outputs are written."""
        if self.remote is not None:
            Shards(self.remote).merge()

    def unlock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None
        self.close()

    def close(self) -> None:
        """At a URL, remove the local copy: everything that counts is at the URL."""
        if self.remote is not None:
            shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> RunDir:
        return self.lock()

    def __exit__(self, *exc) -> None:
        self.unlock()
