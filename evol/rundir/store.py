"""Run folders and dataset files on object storage: an fsspec URL (``s3://bucket/prefix``, ``gs://``, ``az://``)
checked before anything is paid for, and files copied between it and a local folder.

A command works on local files as it always did; what lives at a URL is copied into a local folder first
(``pull``) and what the command wrote is copied back (``push``), one object at a time. An object store makes
an object whole or not at all, so each file there is as atomic as a renamed local one. Credentials are the
filesystem's own business (for S3: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, an
instance role; ``AWS_ENDPOINT_URL`` for another S3-compatible server); evol never takes them as options,
and an error names the URL and what failed, never a secret.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evol.errors import ConfigError

#: ``scheme:/`` or ``scheme://``: one slash is a URL mistyped, not a folder named ``s3:`` (the bug this module ends)
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):/")

#: the stores evol keeps run folders on, and the package that gives fsspec each of them
SERVED: dict[str, str] = {
    "s3": "s3fs",
    "s3a": "s3fs",
    "gs": "gcsfs",
    "gcs": "gcsfs",
    "az": "adlfs",
    "abfs": "adlfs",
    "abfss": "adlfs",
}

#: what a command that reads a run folder at a URL leaves there: the call cache's shards and the round spool
RUN_SKIP = ("calls", ".rounds", "checkpoints")

#: environment variables whose values an error message must never repeat
_SECRETS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AZURE_STORAGE_KEY", "AZURE_STORAGE_CONNECTION_STRING")


def scheme_of(text: str | os.PathLike[str]) -> str | None:
    """The URL scheme of ``text`` (lower case), None for a plain path."""
    m = _SCHEME.match(str(text))
    return m.group(1).lower() if m else None


def local_or_url(text: str | os.PathLike[str]) -> str:
    """A location as evol keeps it: a plain path as given, ``file://`` as its path, a served URL with ``scheme://``
    and no trailing slash; ConfigError in one sentence for a scheme evol cannot serve. No network."""
    text = os.fspath(text)
    scheme = scheme_of(text)
    if scheme is None:
        return str(Path(text))  # as a Path prints it, so a manifest says what it said when ``out`` was a Path
    rest = text[len(scheme) + 1 :].lstrip("/")
    if scheme == "file":
        return str(Path("/" + rest))
    if scheme not in SERVED:
        raise ConfigError(
            f"evol cannot keep files at {text}: use a local folder or an s3://, gs:// or az:// URL ({scheme}:// is not one)."
        )
    if not rest.strip("/"):
        raise ConfigError(f"{text} names no bucket; write it as {scheme}://BUCKET/PREFIX.")
    return f"{scheme}://{rest.rstrip('/')}"


def is_remote(text: str | os.PathLike[str]) -> bool:
    return scheme_of(local_or_url(text)) is not None


@dataclass(frozen=True)
class Remote:
    """A folder (or the parent of a file) at a served URL, on its fsspec filesystem."""

    url: str  # scheme://bucket/prefix, as ``local_or_url`` writes it
    fs: Any

    @classmethod
    def open(cls, url: str) -> Remote:
        """The filesystem for ``url`` from the environment's usual credentials; ConfigError if its package is
        missing. No network yet (``check`` reaches the store)."""
        url = local_or_url(url)
        scheme = scheme_of(url)
        if scheme is None:
            raise ConfigError(f"{url} is a local path, not a URL.")
        import fsspec  # here: only a command given a URL pays for importing it

        try:
            # a new instance, not fsspec's cached one: it reads the credentials the environment holds now
            fs = fsspec.filesystem(scheme, skip_instance_cache=True)
        except ImportError:
            raise ConfigError(f"{url} needs the {SERVED[scheme]} package: pip install {SERVED[scheme]}.") from None
        except Exception as exc:
            raise ConfigError(f"Cannot open {url} ({_reason(exc)}).") from None
        return cls(url, fs)

    @property
    def root(self) -> str:
        """The URL without its scheme: the path the filesystem takes."""
        return self.url.split("://", 1)[1]

    @property
    def name(self) -> str:
        return self.root.rsplit("/", 1)[-1]

    def key(self, name: str) -> str:
        if not name or name.startswith("/") or ".." in Path(name).parts:
            raise ConfigError(f"'{name}' would be outside {self.url}.")
        return f"{self.root}/{name}"

    def child(self, name: str) -> Remote:
        return Remote(f"{self.url}/{name}", self.fs)

    def check(self, *, write: bool) -> None:
        """Reach the store now, before anything is paid for: the bucket must exist and answer with these
        credentials, and for a writer take (and lose) a small object. ConfigError in one sentence otherwise."""
        bucket = self.root.split("/", 1)[0]
        if scheme_of(self.url) in ("s3", "s3a") and not _aws_credentials():
            # s3fs would go on unsigned and see only public buckets: say what is missing instead
            raise ConfigError(
                f"Cannot use {self.url}: no AWS credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                "or AWS_PROFILE, as the AWS CLI reads them."
            )
        try:
            if not self.fs.exists(bucket):
                raise ConfigError(f"Cannot use {self.url}: the bucket {bucket} does not exist or cannot be seen.")
            if write:
                probe = self.key(f".evol-probe-{os.getpid()}")
                self.fs.pipe_file(probe, b"")
                self.fs.rm_file(probe)
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(f"Cannot use {self.url} ({_reason(exc)}).") from None

    def exists(self, name: str) -> bool:
        return bool(self.fs.exists(self.key(name)))

    def names(self, under: str = "") -> list[str]:
        """Every file below the folder (or below ``under`` in it), as names relative to the folder."""
        base = self.key(under) if under else self.root
        try:
            found = self.fs.find(base)
        except FileNotFoundError:
            return []
        n = len(self.root) + 1
        return sorted(p[n:] for p in found if p.startswith(self.root + "/"))

    def read(self, name: str) -> bytes:
        return bytes(self.fs.cat_file(self.key(name)))

    def read_many(self, names: list[str]) -> dict[str, bytes]:
        """Several objects at once (s3fs fetches them concurrently)."""
        if not names:
            return {}
        got = self.fs.cat([self.key(n) for n in names])
        n = len(self.root) + 1
        return {k[n:]: v for k, v in got.items()}

    def write(self, name: str, data: bytes) -> None:
        """One object, whole or absent."""
        self.fs.pipe_file(self.key(name), data)

    def remove(self, names: Iterable[str]) -> None:
        keys = [self.key(n) for n in names]
        if keys:
            self.fs.rm(keys)

    def pull(self, local: Path, names: Iterable[str] | None = None) -> list[str]:
        """Copy files of the folder (all, or ``names``, which must be there) into ``local``; returns their names."""
        wanted = self.names() if names is None else list(names)
        for name in wanted:
            target = local / name
            target.parent.mkdir(parents=True, exist_ok=True)
            self.fs.get_file(self.key(name), str(target))
        return wanted

    def push(self, local: Path, names: Iterable[str] | None = None) -> list[str]:
        """Copy files of ``local`` (all, or those of ``names`` that exist) into the folder, one object each."""
        if names is None:
            files = [p for p in sorted(local.rglob("*")) if p.is_file() and not p.name.startswith(".")]
            names = [p.relative_to(local).as_posix() for p in files]
        done = []
        for name in names:
            path = local / name
            if path.is_file():
                self.fs.put_file(str(path), self.key(name))
                done.append(name)
        return done


def _aws_credentials() -> bool:
    """Whether botocore finds credentials where the AWS CLI looks (environment, profiles, instance role)."""
    import botocore.session  # s3fs's own dependency

    try:
        return botocore.session.get_session().get_credentials() is not None
    except Exception:  # a broken profile file: let the store's own error say it
        return True


def _reason(exc: BaseException) -> str:
    """What went wrong in a few words, with no secret of the environment in it."""
    name = type(exc).__name__
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if "NoCredentials" in name or "credentials" in text.lower():
        text = "no credentials found: set them as this store's own tools read them, e.g. AWS_ACCESS_KEY_ID"
    elif isinstance(exc, PermissionError):
        text = f"access denied: {text}" if text else "access denied"
    for var in _SECRETS:
        value = os.environ.get(var)
        if value:
            text = text.replace(value, "***")
    return f"{name}: {text}" if text else name


def open_checked(text: str | os.PathLike[str], *, write: bool) -> Remote:
    remote = Remote.open(os.fspath(text))
    remote.check(write=write)
    return remote


@contextlib.contextmanager
def staged_folder(
    text: str | os.PathLike[str], *, write: bool = False, pull: bool = True, skip: tuple[str, ...] = ()
) -> Iterator[Path]:
    """A folder to work on as a local one: ``text`` itself if it is local; for a URL a temporary copy of what
    it holds (``pull``; none of the folders named in ``skip``), and, for a writer, the files the block added
    or changed copied back, and those it removed removed there, when it ends without error."""
    where = local_or_url(text)
    if scheme_of(where) is None:
        yield Path(where)
        return
    remote = open_checked(where, write=write)
    tmp = Path(tempfile.mkdtemp(prefix="evol-stage-"))
    try:
        local = tmp / (remote.name or "folder")
        local.mkdir()
        names = [n for n in remote.names() if not n.startswith(tuple(f"{d}/" for d in skip))] if pull else []
        remote.pull(local, names)
        before = {n: _stamp(local / n) for n in names}
        yield local
        if write:
            now = {p.relative_to(local).as_posix(): p for p in sorted(local.rglob("*")) if p.is_file()}
            remote.push(local, [n for n, p in now.items() if before.get(n) != _stamp(p)])
            remote.remove([n for n in before if n not in now])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


@contextlib.contextmanager
def staged_file(text: str | os.PathLike[str], *, write: bool = False) -> Iterator[Path]:
    """A file to read (or, with ``write``, to write) as a local one: ``text`` itself if local; for a URL a
    temporary local copy, sent back to the URL when the block ends without error."""
    where = local_or_url(text)
    if scheme_of(where) is None:
        yield Path(where)
        return
    parent, _, name = where.rpartition("/")
    if "://" not in parent or not parent.split("://", 1)[1]:
        raise ConfigError(f"{where} names no file; write it as SCHEME://BUCKET/PATH/FILE.")
    remote = open_checked(parent, write=write)
    tmp = Path(tempfile.mkdtemp(prefix="evol-stage-"))
    try:
        local = tmp / name
        if not write:
            if not remote.exists(name):
                from evol.errors import InputError

                raise InputError(f"{where} does not exist.")
            remote.pull(tmp, [name])
        yield local
        if write:
            remote.push(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
