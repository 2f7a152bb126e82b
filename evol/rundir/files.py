"""Files that are whole or absent, never half-written: atomic writes of text, JSON and JSONL, and JSONL read back."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from evol.errors import InputError

T = TypeVar("T")

_UMASK = os.umask(0)
os.umask(_UMASK)


class AtomicFile:
    """A file written through a temporary one in the same folder: whole once committed, absent if discarded."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        fd, self._tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        self._f = os.fdopen(fd, "w", encoding="utf-8")

    def write(self, text: str) -> None:
        self._f.write(text)

    def commit(self) -> None:
        """fsync, then rename over the target."""
        try:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
            os.chmod(self._tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; finished files get the usual permissions
            os.replace(self._tmp, self.path)
        except BaseException:
            self.discard()
            raise

    def discard(self) -> None:
        self._f.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)


def atomic_write(path: Path, chunks: Iterable[str]) -> None:
    """Write ``chunks`` through a temporary file in the same folder, fsync it, then rename over the target."""
    f = AtomicFile(path)
    try:
        for chunk in chunks:
            f.write(chunk)
    except BaseException:
        f.discard()
        raise
    f.commit()


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary file next to ``path`` for a writer that wants a file name (pyarrow, bytes): fsynced and
    renamed over ``path`` when the block ends without error, removed otherwise."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: Path, data: Any) -> None:
    """``json.dumps(data, ensure_ascii=False, indent=2)`` and a newline, byte for byte, encoded as it is written:
    a 100,000-row dataset.json never exists as one string (json.dumps peaked at ~210 MB for it)."""
    atomic_write(path, _joined(json.JSONEncoder(ensure_ascii=False, indent=2).iterencode(data), "\n"))


def _joined(chunks: Iterable[str], end: str, size: int = 1 << 16) -> Iterator[str]:
    """The encoder's many small pieces, in strings of ``size`` characters or so."""
    buf: list[str] = []
    n = 0
    for chunk in chunks:
        buf.append(chunk)
        n += len(chunk)
        if n >= size:
            yield "".join(buf)
            buf, n = [], 0
    buf.append(end)
    yield "".join(buf)


def jsonl_line(row: BaseModel | dict) -> str:
    """One line of a JSONL output."""
    data = row.model_dump(mode="json") if isinstance(row, BaseModel) else row
    return json.dumps(data, ensure_ascii=False) + "\n"


def write_jsonl(path: Path, rows: Iterable[BaseModel | dict]) -> None:
    atomic_write(path, map(jsonl_line, rows))


def read_jsonl(path: Path) -> list[dict]:
    """A JSONL file's rows; a broken line or a file that is not UTF-8 is an InputError naming it."""
    return parse_jsonl(path, json.loads)


def parse_jsonl(path: Path, parse: Callable[[str], T]) -> list[T]:
    """Each non-blank line of a JSONL file through ``parse`` (``json.loads``, or a model's ``model_validate_json``);
    a line it refuses, or a file that is not UTF-8, is an InputError naming the file and line."""
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rows.append(parse(line))
                    except ValueError as exc:  # json's JSONDecodeError and pydantic's ValidationError are ValueErrors
                        raise InputError(_bad_line(path, n, line, exc)) from None
    except UnicodeDecodeError:
        raise InputError(f"{path} is not UTF-8 text.") from None
    return rows


def scan_jsonl(path: Path, parse: Callable[[str], T]) -> Iterator[tuple[int, int, T]]:
    """``parse_jsonl`` a line at a time, with where each line is in the file, to read it again with
    :func:`read_at`: (byte offset, length in bytes, parsed) per non-blank line; the same InputErrors."""
    offset = 0
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise InputError(f"{path} is not UTF-8 text.") from None
            if line.strip():
                try:
                    yield offset, len(raw), parse(line)
                except ValueError as exc:
                    raise InputError(_bad_line(path, n, line, exc)) from None
            offset += len(raw)


def read_at(fd: int, offset: int, size: int) -> str:
    """``size`` bytes of an open file (``os.open``) from ``offset``, as text: ``os.pread`` shares no file position
    between threads, and keeps only what it reads in memory."""
    return os.pread(fd, size, offset).decode("utf-8")


def _bad_line(path: Path, n: int, line: str, exc: ValueError) -> str:
    """The one sentence for a refused line: broken JSON in json's words, else the first field a model refused."""
    if not isinstance(exc, json.JSONDecodeError):
        try:
            json.loads(line)  # only on this error path: a broken line gets json's message whatever parsed it
        except json.JSONDecodeError as bad:
            exc = bad
    if isinstance(exc, json.JSONDecodeError):
        return f"{path}:{n} is not valid JSON ({exc.msg})."
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"])) or "the row"
        more = f" and {exc.error_count() - 1} more" if exc.error_count() > 1 else ""
        return f"{path}:{n} is not a row evol run writes ({where}: {first['msg']}{more})."
    return f"{path}:{n} cannot be read ({exc})."
