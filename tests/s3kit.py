"""A real S3-compatible server on 127.0.0.1 for the tests: moto's standalone server, one bucket per test."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

#: credentials moto accepts; no real account is ever reached (AWS_ENDPOINT_URL points at the loopback server)
FAKE_KEYS = {"AWS_ACCESS_KEY_ID": "evol-test-key-id", "AWS_SECRET_ACCESS_KEY": "evol-test-secret-do-not-print"}


#: without keys botocore would ask the cloud's instance metadata address for some: a test never reaches it
NO_METADATA = {"AWS_EC2_METADATA_DISABLED": "true"}


@dataclass
class S3:
    endpoint: str
    bucket: str
    fs: Any

    @property
    def env(self) -> dict[str, str]:
        """What a process needs to reach the server: the endpoint, a region and the fake keys."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_DEFAULT_REGION": "us-east-1", **NO_METADATA, **FAKE_KEYS}

    def url(self, path: str = "") -> str:
        return f"s3://{self.bucket}/{path}".rstrip("/")

    def read(self, path: str) -> bytes:
        return bytes(self.fs.cat_file(f"{self.bucket}/{path}"))

    def names(self, path: str = "") -> list[str]:
        base = f"{self.bucket}/{path}".rstrip("/")
        return sorted(p[len(self.bucket) + 1 :] for p in self.fs.find(base))


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """moto's S3 server on a free loopback port, for the whole session."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> S3:
    """A fresh bucket on the loopback server; this process's environment reaches it (and a subprocess given
    ``s3.env`` too)."""
    import fsspec

    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    bucket = f"evol-{uuid.uuid4().hex[:12]}"
    s = S3(s3_server, bucket, None)
    for k, v in s.env.items():
        monkeypatch.setenv(k, v)
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    fs.mkdir(bucket)
    s.fs = fs
    return s


def without_credentials(env: dict[str, str], home: str) -> dict[str, str]:
    """``env`` with no key, no profile and a home with no ~/.aws: nothing botocore could find keys in."""
    bare = {k: v for k, v in env.items() if k not in FAKE_KEYS}
    return {**bare, "HOME": home, "AWS_SHARED_CREDENTIALS_FILE": f"{home}/none", "AWS_CONFIG_FILE": f"{home}/none"}
