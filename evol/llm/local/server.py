"""The embedded default backend: llama.cpp's OpenAI-compatible server as a child process, on a loopback port.

The server is llama.cpp's own C++ ``llama-server``, as the prebuilt, CPU-portable xllamacpp wheel ships it
(see pyproject.toml for why not a build on the user's machine). The parent owns the child completely: the
child sits in its own session (a Ctrl-C in the terminal reaches only the parent, which then stops the child
in order), it exits on its own when the parent's end of its stdin pipe closes (whatever killed the parent),
and on Linux it also asks the kernel to kill it when the parent dies. The child is ``evol.llm.local.child``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO

from evol.config import RunConfig
from evol.errors import FatalBackendError, TransientBackendError
from evol.llm.client import OpenAIChat
from evol.llm.endpoint import LOOPBACK_OPENER, free_port
from evol.llm.local.child import PARENT_FLAG as _PARENT_FLAG
from evol.llm.local.setup import (
    IDENTITY_PREFIX,
    MIN_CTX,
    context_size,
    cpu_threads,
    local_replicas,
    reinstall_hint,
    replica_threads,
    resolve_model,
)

log = logging.getLogger("evol")

#: llama.cpp's log lines below warning level ("0.01.234.567 I srv ...") and its start-up banner
_QUIET_LINE = re.compile(r"\s*(\d+\.\d+\.\d+\.\d+ [ID] |llama_model_loader:|print_info:|load_tensors:|\.+$)")


def generation_threads() -> int:
    """For a server alone (``evol serve-local``): every core but one, as the run that calls it needs a little
    CPU and llama.cpp's threads spin-wait for each other (see ``local_replicas`` for a run's own servers)."""
    return max(1, min(8, cpu_threads() - 1))  # past a few threads a small model gains nothing


class LocalServer:
    """One llama.cpp server (``evol.llm.local.child``) for one GGUF file, started on ``__enter__`` and stopped
    on ``__exit__``."""

    host = "127.0.0.1"

    def __init__(
        self,
        model_path: Path,
        *,
        n_ctx: int = MIN_CTX,
        port: int | None = None,
        n_threads: int | None = None,
        n_threads_batch: int | None = None,
        start_timeout: float = 180.0,
        grace: float = 5.0,
    ):
        self.model_path = model_path
        self.model_name = model_path.stem  # the alias /v1/models lists, so requests can name it
        self.n_ctx = n_ctx
        self.n_threads = n_threads or generation_threads()
        # reading the prompt on every core measured no faster here, and as fragile on a busy machine
        self.n_threads_batch = n_threads_batch or self.n_threads
        self.start_timeout = start_timeout
        self.grace = grace
        self._wanted_port = port
        self.port: int | None = None
        self._proc: subprocess.Popen | None = None
        self._log: IO[bytes] | None = None  # the server's output: an unlinked file, so nothing is ever left behind
        # stable across runs and ports: it is part of the call-cache key
        self.identity = f"{IDENTITY_PREFIX}{model_path.name}:{model_path.stat().st_size}"

    @classmethod
    def from_config(cls, config: RunConfig, **kwargs) -> LocalServer:
        """The server for a run: ``--model-path`` or the shipped SmolLM2, with a context that fits the run."""
        kwargs.setdefault("n_ctx", context_size(config))
        return cls(resolve_model(config.model_path), **kwargs)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def check_running(self) -> None:
        """Raise FatalBackendError, with the end of its log, if the server has stopped on its own."""
        if self._proc is not None and not self.running:
            raise FatalBackendError(
                f"The llama.cpp server stopped with exit code {self._proc.returncode}; "
                f"its last output: {self._log_tail() or '(none)'}"
            )

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("the local server is not running")
        return f"http://{self.host}:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def command(self, port: int) -> list[str]:
        cmd = [sys.executable, "-m", "evol.llm.local.child"]
        if sys.platform == "linux" and threading.current_thread() is threading.main_thread():
            # the kernel's parent-death signal follows the thread that forked, so ask for it only from the main one
            cmd.append(f"{_PARENT_FLAG}{os.getpid()}")
        return [
            *cmd,
            "--model",
            str(self.model_path),
            "--model_alias",
            self.model_name,
            "--host",
            self.host,
            "--port",
            str(port),
            "--n_ctx",
            str(self.n_ctx),
            "--n_threads",
            str(self.n_threads),
            "--n_threads_batch",
            str(self.n_threads_batch),
        ]

    def __enter__(self) -> LocalServer:
        self._log = tempfile.TemporaryFile(prefix="evol-llama-")
        try:
            for attempt in range(3):
                port = self._wanted_port or free_port(self.host)
                self._start(port)
                if self._wait_ready(port):
                    self.port = port
                    log.debug("local server pid %s on port %s", self.pid, port)
                    self._first_completion()
                    return self
                # the child died: another process may have taken the free port between our probe and its bind
                tail = self._log_tail()
                if self._wanted_port or "address already in use" not in tail.lower() or attempt == 2:
                    raise FatalBackendError(self._death("exited before it was ready"))
                self._stop()
        except BaseException:
            self._cleanup()
            raise
        raise AssertionError("unreachable")

    def _first_completion(self) -> None:
        """One tiny completion before any work: a build that cannot run on this CPU dies here, not mid-run."""
        body = json.dumps(
            {
                "model": self.model_name,
                "messages": [{"role": "user", "content": "Say OK."}],
                "max_tokens": 2,
                "temperature": 0,
            }
        ).encode()
        request = urllib.request.Request(
            f"{self.base_url}/chat/completions", data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with LOOPBACK_OPENER.open(request, timeout=self.start_timeout) as resp:
                json.load(resp)["choices"][0]["message"]  # a well-formed answer is the test
        except (urllib.error.URLError, OSError, ValueError, KeyError, IndexError, TypeError) as exc:
            if self._proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._proc.wait(self.grace)  # a crash: let the child's exit status arrive
            if not self.running:
                raise FatalBackendError(self._death("crashed on its first completion")) from None
            raise FatalBackendError(
                f"The llama.cpp server for {self.model_path.name} did not answer a first test "
                f"completion ({exc}); its last output: {self._log_tail() or '(none)'}"
            ) from None

    def _death(self, when: str) -> str:
        """One sentence for a child that died: the cause (signal or exit code, the server's last words) and the fix."""
        code = self._proc.poll() if self._proc is not None else None
        tail = self._log_tail() or "(none)"
        what = f"The llama.cpp server for {self.model_path.name} {when}"
        if code is not None and code < 0:  # killed by a signal: SIGSEGV, SIGILL, SIGBUS, SIGABRT
            name = _signal_name(-code)
            return (
                f"{what} with {name}: the llama.cpp build installed does not run on this machine's CPU, so "
                f"{reinstall_hint()}; its last output: {tail}"
            )
        return f"{what} (exit code {code}); its last output: {tail}"

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._cleanup()

    def _start(self, port: int) -> None:
        self._proc = subprocess.Popen(
            self.command(port),
            stdin=subprocess.PIPE,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=os.name == "posix",  # the terminal's Ctrl-C goes to us, not straight to it
        )

    def _wait_ready(self, port: int) -> bool:
        """True once /v1/models answers; False if the child exits first; FatalBackendError after the timeout."""
        assert self._proc is not None
        url = f"http://{self.host}:{port}/v1/models"
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            try:
                with LOOPBACK_OPENER.open(url, timeout=2) as resp:
                    if resp.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        tail = self._log_tail()
        self._stop()
        raise FatalBackendError(
            f"The llama.cpp server for {self.model_path.name} did not answer within "
            f"{self.start_timeout:.0f} s; its last output: {tail or '(none)'}"
        )

    def _log_tail(self, lines: int = 4) -> str:
        if self._log is None:
            return ""
        fd = self._log.fileno()
        size = os.fstat(fd).st_size
        start = max(0, size - 65536)
        # pread leaves the file offset, which the child shares for its writes, where it is
        data = os.pread(fd, size - start, start) if hasattr(os, "pread") else b""
        # llama.cpp's info and debug lines (one per request) are noise next to the error that ended it
        text = [
            ln.strip() for ln in data.decode(errors="replace").splitlines() if ln.strip() and not _QUIET_LINE.match(ln)
        ]
        return " | ".join(text[-lines:])[-1500:]

    def _stop(self) -> None:
        """Close its stdin (it exits by itself), then SIGTERM, then SIGKILL: each after a grace period."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            if proc.stdin:
                proc.stdin.close()
        for sig in (None, signal.SIGTERM, getattr(signal, "SIGKILL", signal.SIGTERM)):
            if sig is not None:
                _signal_group(proc, sig)
            try:
                proc.wait(self.grace)
                break
            except subprocess.TimeoutExpired:
                continue
        else:
            proc.wait()

    def _cleanup(self) -> None:
        try:
            self._stop()
        finally:
            self.port = None
            if self._log is not None:
                self._log.close()
                self._log = None


class LocalPool:
    """A run's embedded model: ``replicas`` servers of the same GGUF file, started and stopped together (see
    ``local_replicas`` for why several single-threaded servers rather than one with many threads)."""

    def __init__(self, servers: list[LocalServer]):
        if not servers:
            raise ValueError("a pool needs a server")
        self.servers = servers

    @classmethod
    def from_config(cls, config: RunConfig, *, replicas: int | None = None, **kwargs) -> LocalPool:
        n = replicas or local_replicas()
        kwargs.setdefault("n_threads", replica_threads(n))
        return cls([LocalServer.from_config(config, **kwargs) for _ in range(n)])

    @property
    def model_name(self) -> str:
        return self.servers[0].model_name

    @property
    def identity(self) -> str:  # every replica serves the same file, so every one has this identity
        return self.servers[0].identity

    @property
    def base_url(self) -> str:
        return self.servers[0].base_url

    @property
    def n_threads(self) -> int:
        return self.servers[0].n_threads

    def __enter__(self) -> LocalPool:
        with contextlib.ExitStack() as stack:
            # one after another: each start checks its own first completion, and a failed start stops the others
            for server in self.servers:
                stack.enter_context(server)
            stack.pop_all()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for server in self.servers:
            server._cleanup()


class LocalChat(OpenAIChat):
    """The OpenAI-compatible client, aware that its servers are our children: calls are spread over every
    server of the pool, and a failed call to a server that has died stops the run at once (with the server's
    last words) instead of retrying a dead port for minutes."""

    def __init__(self, server: LocalServer | LocalPool, base_url: str | None, api_key: str | None, **kwargs):
        self.servers = server.servers if isinstance(server, LocalPool) else [server]
        kwargs.setdefault("replicas", [s.base_url for s in self.servers[1:]])
        super().__init__(base_url, api_key, **kwargs)

    async def _once(self, *args, **kwargs):
        try:
            return await super()._once(*args, **kwargs)
        except TransientBackendError:
            for server in self.servers:
                server.check_running()
            raise


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
        if os.name == "posix":
            os.killpg(proc.pid, sig)  # its own session: the group id is its pid
        else:
            proc.send_signal(sig)


def _signal_name(number: int) -> str:
    with contextlib.suppress(ValueError):
        return signal.Signals(number).name
    return f"signal {number}"
