"""Shared fixtures: the scripted OpenAI-compatible server on 127.0.0.1 and the shipped seeds."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evol.testing.replies import echo
from evol.testing.server import ScriptedServer

#: the Prefect flow tests' scripted endpoint and reference run (fixtures shared by test_flows and test_flows_cli)
pytest_plugins = ["tests.flowkit", "tests.s3kit"]

# Hugging Face datasets loads the exports from local files; it must never look for anything on the Hub
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "datasets" / "seeds" / "self_instruct_seed_tasks.jsonl"


@pytest.fixture(autouse=True)
def _root_logging_restored():
    """Take back the root handlers a test installed: ``evol.cli.main.main`` run in-process points one at pytest's capture
    stream for that test, which is closed afterwards, and a later test that writes to it would fail on it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in root.handlers[:]:
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)


@pytest.fixture
def server():
    """An echo server; tests replace ``server.script`` to script answers."""
    with ScriptedServer(echo) as srv:
        yield srv


def run_cli(
    *args: str, env: dict | None = None, timeout: float = 600, engine: str | None = "local"
) -> subprocess.CompletedProcess:
    """``python -m evol ARGS`` in a subprocess, as a user would run it, without any real API key.

    A ``run`` or ``optimize`` goes through ``--engine local`` unless ``engine`` says otherwise: Prefect's few seconds of
    start-up per run would dominate the tests that are not about Prefect (tests/engines/test_flows.py is).
    """
    command = next((a for a in args if not a.startswith("-")), None)  # after global options such as -q
    if command in ("run", "optimize") and engine is not None:
        args = (*args, "--engine", engine)
    full_env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "EVOL_API_KEY")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "evol", *args], capture_output=True, text=True, env=full_env, timeout=timeout, cwd=ROOT
    )
