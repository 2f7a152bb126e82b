"""The wheel works on its own: built from the tree, installed non-editable into a fresh venv, run from elsewhere.

The dev venv has evol installed editable, so every other test imports the checkout; a template or data file the wheel
forgets would pass them all and fail only for a user who runs ``pip install evol``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from evol.testing.replies import GIVEN, Reply, given_prompt, last_user
from evol.testing.server import ScriptedServer

from .conftest import ROOT

pytestmark = pytest.mark.slow  # a build, a venv, a pip install and a subprocess run (a few seconds)

SEED = "Write a short guide to keeping a sourdough starter alive."
EXTRA = " Also explain each step of your reasoning in detail."
ANSWER = (
    "Feed the starter once a day with equal weights of flour and water, keep it somewhere warm, and discard half "
    "before each feeding so it does not grow sour and sluggish. Bubbles, a domed top and a pleasant tangy smell "
    "show that the yeast and bacteria are healthy and ready to bake with."
)
#: at the top of the checkout: too big, or not part of the source (the build must not see the editable install's venv)
TOP_SKIPPED = {".git", ".venv", "venv", "datasets", "build", "dist"}
#: anywhere in the tree: caches a previous test run or tool left behind
CACHES = {"__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis"}


def _skipped(folder: str, names: list[str]) -> set[str]:
    top = TOP_SKIPPED if Path(folder) == ROOT else set()
    return {n for n in names if n in top or n in CACHES or n.endswith((".pyc", ".egg-info"))}


def _clean_env() -> dict[str, str]:
    """Ours, without API keys (the run must talk only to the scripted server) or anything that steers imports."""
    dropped = ("OPENAI_API_KEY", "EVOL_API_KEY", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")
    return {k: v for k, v in os.environ.items() if k not in dropped}


def _run(*cmd: str | Path, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=_clean_env(), capture_output=True, text=True, timeout=timeout
    )


@dataclass(frozen=True)
class Installed:
    venv: Path
    python: Path
    elsewhere: Path  # a working directory outside the checkout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built offline from a copy of the working tree (so the checkout gets no build/ or dist/)."""
    if importlib.util.find_spec("hatchling") is None:
        pytest.fail("hatchling (the build backend) is not installed: pip install -e '.[dev]'")
    base = tmp_path_factory.mktemp("wheel")
    src, dist = base / "src", base / "dist"
    # the working tree rather than git HEAD: the wheel of what the other tests test, uncommitted edits included
    shutil.copytree(ROOT, src, ignore=_skipped)
    built = _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",  # hatchling from this venv: an isolated build would fetch it from the index
        "--no-index",
        "-w",
        dist,
        src,
        cwd=base,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (found,) = dist.glob("evol-*.whl")
    return found


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """A fresh venv holding the wheel, which sees this venv's dependencies but not the checkout."""
    base = tmp_path_factory.mktemp("fresh")
    venv = base / "venv"
    made = _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=base)  # pip comes from here (--python)
    assert made.returncode == 0, made.stderr
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    site = _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=base)
    assert site.returncode == 0, site.stderr
    # A path in a .pth file is appended after the venv's own site-packages, and the .pth files inside it are not
    # processed: the dependencies come along, the editable install's _editable_impl_evol.pth (-> the checkout) does not
    ours = sysconfig.get_paths()
    deps = dict.fromkeys([ours["purelib"], ours["platlib"]])
    (Path(site.stdout.strip()) / "_evol_test_deps.pth").write_text("".join(f"{d}\n" for d in deps), encoding="utf-8")
    pip = _run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", wheel, cwd=base)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    elsewhere = base / "work"
    elsewhere.mkdir()
    return Installed(venv=venv, python=python, elsewhere=elsewhere)


def test_the_wheel_holds_the_templates_and_the_report_but_no_tests(wheel: Path):
    names = zipfile.ZipFile(wheel).namelist()
    for needed in ("evol/_prompts/judge.txt", "evol/_prompts/general/profile.toml", "evol/report/report.html"):
        assert needed in names
    assert not [n for n in names if n.startswith(("tests/", "bench/"))]
    # nothing but the package and its metadata: no top-level prompts/, flows/ or stray caches
    assert {n.split("/", 1)[0] for n in names if ".dist-info/" not in n} == {"evol"}
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_the_installed_package_is_the_wheel_not_the_checkout(installed: Installed):
    probe = (
        "import json, sys, evol, evol.prompts; "
        "print(json.dumps({'file': evol.__file__, 'prompts': str(evol.prompts.default_prompts_dir()), 'path': sys.path}))"
    )
    proc = _run(installed.python, "-c", probe, cwd=installed.elsewhere)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    package = Path(got["file"]).resolve().parent
    assert package.is_relative_to(installed.venv.resolve())
    assert not package.is_relative_to(ROOT)
    # the templates are the wheel's copy inside the package, not the checkout's prompts/
    assert Path(got["prompts"]).resolve() == package / "_prompts"
    assert str(ROOT) not in got["path"]


def _script(request: dict) -> Reply:
    """A real evolution (the parent plus a requirement), judged different from its parent, and a helpful answer."""
    prompt = last_user(request)
    if GIVEN in prompt:
        return Reply(content=given_prompt(prompt).strip() + EXTRA)
    if "First instruction:" in prompt:
        return Reply(content="Not Equal")
    return Reply(content=ANSWER)


def test_a_one_seed_run_with_the_installed_package(installed: Installed):
    seeds = installed.elsewhere / "seeds.txt"
    seeds.write_text(SEED + "\n", encoding="utf-8")
    out = installed.elsewhere / "out"
    with ScriptedServer(_script) as srv:
        # from a folder outside the checkout, so python -m evol cannot find ./evol either
        proc = _run(
            installed.python,
            "-m",
            "evol",
            "run",
            "--seeds",
            seeds,
            "--rounds",
            "1",
            "--no-seeds",  # the one evolution is the dataset under test
            "--base-url",
            srv.base_url,
            "--engine",
            "local",
            "--out",
            out,
            cwd=installed.elsewhere,
        )
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert "Traceback" not in proc.stderr
    rows = json.loads((out / "dataset.json").read_text(encoding="utf-8"))
    assert rows == [{"instruction": SEED + EXTRA, "output": ANSWER}]
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["prompt_sha256"] and all(manifest["prompt_sha256"].values())
