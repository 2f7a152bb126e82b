"""The Prefect API a run reports to: the one at PREFECT_API_URL, or a temporary server that lives as long as the run.

The temporary server is started here rather than by Prefect's ``SubprocessASGIServer``: importing that class
imports Prefect's whole server (FastAPI, SQLAlchemy, the models) into the run's own process, 80 MB of RSS and
seconds of start-up (measured) for code that runs only in the child. ``launch()`` imports no Prefect at all, so
the CLI starts the child before it imports Prefect, and the child's boot overlaps the run's own start.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Iterator

from evol.errors import FatalBackendError
from evol.llm.endpoint import LOOPBACK_OPENER, free_port

STARTUP_TIMEOUT = 120  # seconds the temporary Prefect server may take to answer
PORT_IN_USE = 3  # uvicorn's exit code when it cannot bind: another process took the port meanwhile


class TemporaryServer:
    """Prefect's API server (uvicorn over ``prefect.server.api.server:create_app``) in a child process that
    dies with this one, even on SIGKILL (``evol.engines.prefect._server_child``)."""

    def __init__(self) -> None:
        self.port = 0
        self.proc: subprocess.Popen | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def start(self) -> TemporaryServer:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "evol.engines.prefect._server_child",
                str(os.getpid()),
                "--app-dir",  # Prefect's own folder first, as Prefect does: not a "prefect" folder where the user is
                _site_of("prefect"),
                "--factory",
                "prefect.server.api.server:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "error",
                "--lifespan",
                "on",
            ],
            env=_server_env(),
        )
        return self

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Wait until the API answers its health check; one sentence if it exits or never answers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None, "start() first"
            code = self.proc.poll()
            if code == PORT_IN_USE:
                self.start()
                continue
            if code is not None:
                raise FatalBackendError(
                    f"Prefect's temporary server exited (code {code}) before it was ready; its error is above. "
                    "Run with --engine local, or point PREFECT_API_URL at a running Prefect server."
                )
            with (
                contextlib.suppress(OSError),
                LOOPBACK_OPENER.open(f"{self.api_url}/health", timeout=2) as r,
            ):  # not up yet
                if r.status == 200:
                    return
            time.sleep(0.1)
        self.stop()
        raise FatalBackendError(
            f"Prefect's temporary server did not answer within {timeout:.0f} s. Run with --engine local, or point "
            "PREFECT_API_URL at a running Prefect server."
        )

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


def launch() -> TemporaryServer | None:
    """Start a temporary server now, unless PREFECT_API_URL is in the environment; ``prefect_api`` takes it over
    (and stops it if a Prefect profile turns out to name a server). Imports no Prefect."""
    if os.environ.get("PREFECT_API_URL"):
        return None
    return TemporaryServer().start()


@contextlib.contextmanager
def prefect_api(launched: TemporaryServer | None = None) -> Iterator[None]:
    """Use the Prefect server at PREFECT_API_URL, or else a temporary one for this run only (``launched``, if the
    caller started it early).

    Prefect would start a temporary server by itself, but only for this process: Dask workers would each
    start their own on the same SQLite file. Starting it here and setting PREFECT_API_URL (which task
    runners hand to their workers) gives one server for all.
    """
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_SERVER_ANALYTICS_ENABLED,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        temporary_settings,
    )

    if PREFECT_API_URL.value():  # from the environment or the active Prefect profile
        if launched is not None:
            launched.stop()
        yield
        return
    server = launched or TemporaryServer().start()
    no_proxy = _no_proxy(os.environ)
    try:
        # Prefect's 20 s default is not enough on a busy 2-core machine (its start measured ~10 s idle), and a
        # timeout fails the whole run; a longer wait costs nothing when it starts quickly
        server.wait_ready(max(STARTUP_TIMEOUT, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()))
        with (
            temporary_settings({PREFECT_API_URL: server.api_url, PREFECT_SERVER_ANALYTICS_ENABLED: False}),
            _env(NO_PROXY=no_proxy, no_proxy=no_proxy),  # this process's Prefect client goes straight there too
        ):
            try:
                yield
            finally:
                _drain()
    finally:
        server.stop()


def _server_env() -> dict[str, str]:
    """The child's environment: ours, Prefect's settings changed in this process (if Prefect is loaded), and what
    a temporary server needs. Its telemetry heartbeat is off: it writes to SQLite at start-up and logs "database
    is locked" tracebacks when it collides with the run's writes. A proxy from HTTP_PROXY cannot reach this
    machine's loopback, where the server listens."""
    env = dict(os.environ)
    if "prefect.settings" in sys.modules:  # settings set in code (temporary_settings) live only in this process
        from prefect.settings import get_current_settings

        env.update(get_current_settings().to_environment_variables(exclude_unset=True))
    no_proxy = _no_proxy(env)
    env.update(
        PREFECT_UI_ENABLED="0",
        PREFECT__SERVER_EPHEMERAL="1",
        PREFECT__SERVER_FINAL="1",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        NO_PROXY=no_proxy,
        no_proxy=no_proxy,
    )
    return env


def _no_proxy(env) -> str:
    return ",".join(filter(None, (env.get("NO_PROXY") or env.get("no_proxy"), "127.0.0.1,localhost")))


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _site_of(package: str) -> str:
    """The folder that holds ``package``, found without importing it."""
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.origin is not None, f"{package} is not installed"
    return os.path.dirname(os.path.dirname(spec.origin))


def _drain() -> None:
    """Send the logs and events still queued while the server is up, or they fail loudly at exit."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):  # a worker never started has nothing to send
            worker.drain_all(timeout=5)
