"""The Prefect flow tests' scripted endpoint, the plain reference run they must equal, and their helpers.

The scripted answers depend only on the request, never on call order or history, as a resumed run needs. Its
``endpoint`` and ``reference`` fixtures are registered for every test module by conftest.py (``pytest_plugins``);
each module that uses them gets its own (module scope).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
from pathlib import Path

import pytest

from evol.config import build_config
from evol.engines.local import execute
from evol.rundir.manifest import Manifest
from evol.testing.replies import GIVEN, given_prompt
from evol.testing.server import Reply, ScriptedServer, last_user

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "datasets" / "seeds" / "self_instruct_seed_tasks.jsonl"
KEY = "sk-flowtest-0123456789abcdef"
ROUNDS = 2
N_SEEDS = 14
CHUNK = 4  # 4 chunks per round: several chunk tasks, run two at a time
#: the rounds a run spends chunk tasks on: the seeds' own (answered for the dataset, on by default) and each round
CHUNK_ROUNDS = ROUNDS + 1


def _h(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


def answer(request: dict, mode: str = "rich") -> Reply:
    """A deterministic Evol-Instruct endpoint.

    ``rich``: some of every outcome (kept, eliminated, near duplicate, failed with HTTP 400); ``clean``: the
    same without failures; ``simple``: every evolution kept, three calls per seed and round.
    """
    prompt = last_user(request)
    if GIVEN in prompt:
        parent = given_prompt(prompt)
        h = _h(parent) if mode != "simple" else 0
        if h % 9 == 1:
            return Reply(content=parent)  # identical_to_parent
        if h % 9 == 2:  # near duplicates of each other (and every request body still unique)
            return Reply(
                content=f"Describe the sea in one haiku and explain each of its three lines, case {h % 10000}."
            )
        if mode == "rich" and h % 9 == 3:
            return Reply(status=400, content="this request is not allowed")  # failed, not fatal
        return Reply(content=f"{parent} Then justify each step with an example from history (case {h % 1000}).")
    if "First instruction:" in prompt and "Second instruction:" in prompt:
        return Reply(content="Equal" if mode != "simple" and _h(prompt) % 11 == 0 else "Not Equal")
    if mode != "simple" and _h(prompt) % 13 == 0:
        return Reply(content="Sorry, I cannot help with that.")
    return Reply(content="A careful answer: " + " ".join(f"point{i}-{_h(prompt) % 97}" for i in range(60)))


class Script:
    """The server's script, switchable mid-module; can turn every call after the first ``fatal_after`` into a 401."""

    def __init__(self):
        self.mode = "rich"
        self.fatal_after: int | None = None
        self.calls = 0
        self.answered: list[str] = []  # bodies answered 200, as JSON
        self.lock = threading.Lock()

    def __call__(self, request: dict) -> Reply:
        with self.lock:
            self.calls += 1
            if self.fatal_after is not None and self.calls > self.fatal_after:
                return Reply(status=401, content="Incorrect API key provided.")
        reply = answer(request, self.mode)
        if reply.status == 200:
            with self.lock:
                self.answered.append(_body(request))
        return reply


def _body(request: dict) -> str:
    return json.dumps(request, sort_keys=True)


@pytest.fixture(scope="module")
def endpoint():
    """The scripted endpoint, which demands the key: chunk tasks must find it in their environment."""
    script = Script()
    old = {k: os.environ.pop(k, None) for k in ("EVOL_API_KEY", "OPENAI_API_KEY")}
    os.environ["EVOL_API_KEY"] = KEY  # before any Dask worker starts, so workers inherit it
    try:
        with ScriptedServer(script, require_key=KEY) as srv:
            srv.script_obj = script
            yield srv
    finally:
        os.environ.pop("EVOL_API_KEY", None)
        for k, v in old.items():
            if v is not None:
                os.environ[k] = v


def config(srv: ScriptedServer, out: Path, seeds: Path = SEEDS, **extra):
    values = {"seeds": seeds, "rounds": ROUNDS, "base_url": srv.base_url, "out": out, "concurrency": 4, **extra}
    if seeds == SEEDS:
        values.setdefault("limit", N_SEEDS)
    return build_config({}, values)


def run_flow(cfg, **kwargs) -> Manifest:
    from evol.engines.prefect.evol_flow import evol_flow

    return asyncio.run(evol_flow(config=cfg.explicit_dict(), chunk_size=CHUNK, **kwargs))  # as run_with_prefect


REFERENCE_REQUESTS: list[str] = []  # every request of the reference run, as JSON


@pytest.fixture(scope="module")
def reference(endpoint, tmp_path_factory) -> Path:
    """The plain, Prefect-free run (``evol.engines.local.execute``) that every flow run must equal."""
    out = tmp_path_factory.mktemp("reference")
    first = len(endpoint.requests)
    manifest = asyncio.run(execute(config(endpoint, out)))
    REFERENCE_REQUESTS[:] = [_body(r) for r in endpoint.requests[first:]]  # each module runs it once
    c = manifest.counts
    # the script must give the flows something to get wrong: every kind of outcome
    assert c.kept and c.eliminated and c.duplicate and c.failed, c
    return out


def same_outputs(a: Path, b: Path) -> None:
    for name in ("dataset.json", "records.jsonl", "rejected.jsonl"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
