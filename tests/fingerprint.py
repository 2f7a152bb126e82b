"""``python -m tests.fingerprint``: the sha256 of what fixed scripted runs write, to show a refactor changes no byte.

Run it in the tree before a change and in the tree after (``git worktree add /tmp/before BASE``, then
``cd /tmp/before && python -m tests.fingerprint``): the same lines mean the same dataset.json, records.jsonl
and rejected.jsonl for each run, then the same export files of those run folders. Every path a run sees is
under one fixed folder (``--work``) and the server listens on one fixed port, so run ids and exports do not
differ by where the checkout is or which port was free; the
dataset cards are left out, as they hold the runs' start times.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from evol.seeds import load_seeds
from evol.testing.answer_script import AnswerScript
from evol.testing.replies import Script
from evol.testing.server import ScriptedServer

from .conftest import ROOT, SEEDS
from .e2e.test_realistic import SEEDS as REALISTIC_SEEDS
from .realistic import RealisticModel
from .scripted import EvolScript

OUTPUTS = ("dataset.json", "records.jsonl", "rejected.jsonl")
#: the scripted server's port, fixed: a run id hashes the run's options, --base-url among them, so a free port
#: chosen anew each time gave the exports that carry run ids (the hf parquet's run_id column) another hash
PORT = 47391


def evol(*args: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "EVOL_API_KEY")}
    proc = subprocess.run([sys.executable, "-m", "evol", *args], capture_output=True, text=True, env=env, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"python -m evol {' '.join(args)} failed:\n{proc.stderr[-3000:]}")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m tests.fingerprint", description=__doc__)
    p.add_argument("--work", type=Path, default=Path("/tmp/evol-fingerprint"), help="emptied, then written")
    work = p.parse_args().work
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    seeds = work / "seeds.jsonl"
    shutil.copy(SEEDS, seeds)
    (work / "realistic.txt").write_text("\n".join(REALISTIC_SEEDS) + "\n", encoding="utf-8")
    runs: dict[str, tuple[Script, list[str]]] = {
        # the end-to-end run with planted failures (tests/e2e/test_e2e.py)
        "e2e": (
            EvolScript([s.instruction for s in load_seeds(seeds).seeds]),
            [f"--seeds={seeds}", "--rounds=3", "--seed=7", "--concurrency=16"],
        ),
        # refusals, wrappers, rewordings and the judge's many forms (tests/e2e/test_realistic.py), general and code
        "realistic": (
            RealisticModel(REALISTIC_SEEDS),
            [f"--seeds={work / 'realistic.txt'}", "--rounds=3", "--seed=3", "--concurrency=8"],
        ),
        "code": (
            RealisticModel(REALISTIC_SEEDS),
            [f"--seeds={work / 'realistic.txt'}", "--rounds=2", "--seed=3", "--profile=code", "--concurrency=8"],
        ),
        # several answers, ranked and evolved; one call at a time, as the scripted sampler counts draws per prompt
        "answers": (
            AnswerScript(),
            [
                f"--seeds={seeds}",
                "--limit=12",
                "--rounds=2",
                "--answers=3",
                "--evolve-answers=1",
                "--model=m-evo",
                "--concurrency=1",
            ],
        ),
    }
    for name, (script, args) in runs.items():
        with ScriptedServer(script, port=PORT) as srv:
            evol("run", *args, f"--base-url={srv.base_url}", f"--out={work / name}", "--engine=local")
        for file in OUTPUTS:
            print(f"{name}/{file} {digest(work / name / file)}")
    exports = {
        "sharegpt": [str(work / "e2e"), "--format=sharegpt", "--val-fraction=0.1"],
        "dpo": [str(work / "answers"), "--format=dpo"],
        "preference-chat": [str(work / "answers"), "--format=preference-chat", "--system=Be brief."],
        "hf": [str(work / "realistic"), str(work / "code"), "--format=hf", "--min-words=12"],
        "openai-chat": [str(work / "e2e"), str(work / "realistic"), "--format=openai-chat", "--round=1,2"],
    }
    for name, args in exports.items():
        out = work / f"export-{name}"
        evol("export", *args, f"--out={out}")
        for file in sorted(f for f in out.rglob("*") if f.is_file() and f.name not in ("README.md", "export.json")):
            print(f"export-{name}/{file.relative_to(out)} {digest(file)}")


if __name__ == "__main__":
    main()
