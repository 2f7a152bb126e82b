"""The embedded model's server process: ``python -m evol.llm.local.child [--evol-parent-pid=N] ARGS``.

evol.llm.local.server starts it and owns it: it serves one GGUF file with llama.cpp's C++ server (xllamacpp) on a
loopback port, and ends itself when its parent dies or closes its stdin.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import signal
import sys
import threading
import time
from pathlib import Path

PARENT_FLAG = "--evol-parent-pid="
#: x86-64 instruction sets the prebuilt wheel's CPU kernels use (its ``get_system_info()``), as /proc/cpuinfo
#: names them: without one of them the server would die of SIGILL on its first token
X86_NEEDS = {
    "SSE3": "pni",
    "SSSE3": "ssse3",
    "AVX": "avx",
    "AVX2": "avx2",
    "F16C": "f16c",
    "FMA": "fma",
    "BMI2": "bmi2",
}


def die_with_parent(parent_pid: int) -> None:
    """Linux: have the kernel SIGKILL us when the parent dies; if it already has, go now."""
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before the prctl took effect
        os._exit(1)


def _exit_when_stdin_closes() -> None:
    """The parent holds the only write end of our stdin: EOF means it stopped us or died."""
    with contextlib.suppress(OSError):
        while os.read(0, 4096):  # the raw fd: a buffered reader's lock would trouble interpreter shutdown
            pass
    os._exit(0)


def built_features(system_info: str) -> set[str]:
    """The features a llama.cpp build reports as on (``AVX2 = 1``) in its system info."""
    return {name for name, on in re.findall(r"([A-Z0-9_]+) = (\d)", system_info) if on == "1"}


def missing_cpu_features(system_info: str, cpu_flags: set[str]) -> list[str]:
    """The x86-64 instruction sets the server was built for that this CPU lacks."""
    built = built_features(system_info)
    return sorted(name for name, flag in X86_NEEDS.items() if name in built and flag not in cpu_flags)


def _cpu_flags() -> set[str] | None:
    """This CPU's feature flags (Linux x86-64), or None where they cannot be read."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    m = re.search(r"^flags\s*:(.*)$", text, re.MULTILINE)
    return set(m.group(1).split()) if m else None


def _serve(args: list[str]) -> None:
    """Load the model and serve it on the given loopback port until our stdin closes."""
    import argparse

    import xllamacpp

    p = argparse.ArgumentParser(prog="python -m evol.llm.local.server")
    for name in ("--model", "--model_alias", "--host"):
        p.add_argument(name, required=True)
    for name in ("--port", "--n_ctx", "--n_threads", "--n_threads_batch"):
        p.add_argument(name, type=int, required=True)
    a = p.parse_args(args)

    flags = _cpu_flags()
    missing = missing_cpu_features(xllamacpp.get_system_info(), flags) if flags is not None else []
    if missing:  # say so, instead of dying of SIGILL in the middle of a matrix product
        print(
            f"evol: this CPU lacks {', '.join(missing)}, which the prebuilt llama.cpp server needs; point at an "
            f"endpoint with --base-url URL instead",
            file=sys.stderr,
            flush=True,
        )
        os._exit(3)

    params = xllamacpp.CommonParams()
    params.model.path = a.model
    params.model_alias = {a.model_alias}  # the id /v1/models lists, so requests can name it
    params.hostnames = [a.host]
    params.port = a.port
    params.n_ctx = a.n_ctx
    params.cpuparams.n_threads = a.n_threads
    params.cpuparams_batch.n_threads = a.n_threads_batch
    # one request at a time, each prompt evaluated from its first token: an answer then depends only on its
    # request (with its seed), not on which request came before or ran beside it in a batch
    params.n_parallel = 1
    params.cache_prompt = False
    params.verbosity = 1  # warnings and errors: the log is read only for the reason a server died
    try:
        server = xllamacpp.Server(params)
    except RuntimeError as exc:  # the log above says why (most often: the file is not a model llama.cpp knows)
        print(f"evol: llama.cpp could not start serving {a.model}: {exc}", file=sys.stderr, flush=True)
        # llama.cpp writes its log from a worker thread of its own: the line that says why ("failed to load
        # model") can still be on its way, and os._exit would drop it (seen on a loaded machine)
        time.sleep(0.5)
        os._exit(1)
    threading.Event().wait()  # served by llama.cpp's own threads until the stdin watcher ends the process
    del server


def child_main(argv: list[str]) -> None:
    if argv and argv[0].startswith(PARENT_FLAG):
        die_with_parent(int(argv[0][len(PARENT_FLAG) :]))
        argv = argv[1:]
    threading.Thread(target=_exit_when_stdin_closes, name="evol-parent-watch", daemon=True).start()
    _serve(argv)


if __name__ == "__main__":
    child_main(sys.argv[1:])
