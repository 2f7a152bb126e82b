"""The Prefect API a run reports to: the one at PREFECT_API_URL, or a temporary server that lives as long as the run."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator

STARTUP_TIMEOUT = 120  # seconds the temporary Prefect server may take to answer


@contextlib.contextmanager
def prefect_api() -> Iterator[None]:
    """Use the Prefect server at PREFECT_API_URL, or else a temporary one for this process only.

    Prefect would start a temporary server by itself, but only for this process: Dask workers would each
    start their own on the same SQLite file. Starting it here and setting PREFECT_API_URL (which task
    runners hand to their workers) gives one server for all. Its telemetry heartbeat is off: it writes to
    SQLite at start-up and logs "database is locked" tracebacks when it collides with the run's writes.
    """
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_SERVER_ANALYTICS_ENABLED,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        temporary_settings,
    )

    if PREFECT_API_URL.value():
        yield
        return
    # the server is a subprocess: it reads the telemetry switch from its environment; and a proxy from
    # HTTP_PROXY cannot reach this machine's loopback, where the server listens
    no_proxy = ",".join(filter(None, (os.environ.get("NO_PROXY") or os.environ.get("no_proxy"), "127.0.0.1,localhost")))
    with (
        temporary_settings({PREFECT_SERVER_ANALYTICS_ENABLED: False}),
        _env(PREFECT_SERVER_ANALYTICS_ENABLED="false", NO_PROXY=no_proxy, no_proxy=no_proxy),
    ):
        server = _temporary_server()
        # Prefect's 20 s default is not enough on a busy 2-core machine (its start measured ~10 s idle), and a
        # timeout fails the whole run; a longer wait costs nothing when it starts quickly
        server.start(timeout=max(STARTUP_TIMEOUT, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()))
        try:
            with temporary_settings({PREFECT_API_URL: server.api_url}):
                try:
                    yield
                finally:
                    _drain()
        finally:
            server.stop()


def _temporary_server():
    """Prefect's temporary server (not yet started), one that dies with this process even on SIGKILL."""
    from prefect.server.api.server import SubprocessASGIServer

    class TemporaryServer(SubprocessASGIServer):
        """Prefect's temporary server, started through ``evol.flows._server_child`` so that it dies with this process.

        The command is Prefect 3.8's own (``_run_uvicorn_command``), with the wrapper in front of uvicorn.
        """

        def _run_uvicorn_command(self) -> subprocess.Popen:
            import prefect
            from prefect.settings import get_current_settings

            env = {
                **os.environ,
                "PREFECT_UI_ENABLED": "0",
                "PREFECT__SERVER_EPHEMERAL": "1",
                "PREFECT__SERVER_FINAL": "1",
                **get_current_settings().to_environment_variables(exclude_unset=True),
            }
            return subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "evol.flows._server_child",
                    str(os.getpid()),
                    "--app-dir",
                    str(prefect.__module_path__.parent),
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
                env=env,
            )

    return TemporaryServer()


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


def _drain() -> None:
    """Send the logs and events still queued while the server is up, or they fail loudly at exit."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):  # a worker never started has nothing to send
            worker.drain_all(timeout=5)
