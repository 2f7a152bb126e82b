"""The tree stays lint-clean, formatted and type-checked with the settings in pyproject.toml.

CI runs only the README's test command, so the checks the project promises run here, with the pinned
versions of the dev extra.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TREES = ["evol", "flows", "tests", "bench"]


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[dev]'")
    return found


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)


def test_ruff_finds_nothing():
    r = _run(_tool("ruff"), "check", *TREES)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_tree_is_formatted():
    r = _run(_tool("ruff"), "format", "--check", *TREES)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.slow
def test_mypy_finds_nothing():
    r = _run(_tool("mypy"))  # the files and settings are pyproject.toml's [tool.mypy]
    assert r.returncode == 0, r.stdout[-5000:] + r.stderr
