"""A model that plays the method well, with faults planted per test, and the helpers the fault tests share.

Used by test_faults (transient and per-item faults), test_faults_answers (answers that arrive but are no good),
test_faults_endpoint (permanent errors and an endpoint that dies), test_faults_input, test_faults_files and
test_faults_secrets.
"""

from __future__ import annotations

import asyncio
import json
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from evol.config import RunConfig
from evol.engines.local import run_pipeline
from evol.llm.client import OpenAIChat
from evol.models import Models
from evol.rundir.files import read_jsonl
from evol.rundir.folder import RunDir
from evol.testing.replies import GIVEN, given_prompt
from evol.testing.server import Reply, ScriptedServer, last_user
from evol.testing.words import filler

from .conftest import run_cli

MODELS = Models(evolve="scripted-model", respond="scripted-model", judge="scripted-model")


# --- a model that plays the method well, with faults planted by test ---------------------------------------


def kind_of(prompt: str) -> str:
    if GIVEN in prompt:
        return "evolve"
    if "First instruction:" in prompt and "Second instruction:" in prompt:
        return "judge"
    return "respond"


def good_answer(kind: str, prompt: str) -> Reply:
    if kind == "evolve":
        parent = given_prompt(prompt)
        return Reply(content=f"{parent} Then {filler('evolve:' + parent, 120)}.")
    if kind == "judge":
        return Reply(content="Not Equal")
    return Reply(content=f"Here is a careful answer. {filler('answer:' + prompt, 200)}")


@dataclass
class Fault:
    kind: str  # evolve, judge or respond
    topic: str | None  # only prompts naming this seed topic; None for every prompt of the kind
    reply: Reply | Callable[[str], Reply]
    times: int | None  # how many calls it hits; None for all of them
    hits: int = 0


class Model:
    """A ScriptedServer script: good answers, except where a planted fault matches (first match wins)."""

    def __init__(self):
        self.faults: list[Fault] = []
        self.lock = threading.Lock()
        self.seen: list[tuple[str, str]] = []  # (kind, prompt) of every chat request

    def fail(self, kind: str, reply, *, topic: str | None = None, times: int | None = None) -> Fault:
        fault = Fault(kind, topic, reply, times)
        self.faults.append(fault)
        return fault

    def __call__(self, request: dict) -> Reply:
        prompt = last_user(request)
        kind = kind_of(prompt)
        with self.lock:
            self.seen.append((kind, prompt))
            for f in self.faults:
                if f.kind == kind and (f.topic is None or f.topic in prompt) and (f.times is None or f.hits < f.times):
                    f.hits += 1
                    return f.reply(prompt) if callable(f.reply) else f.reply
        return good_answer(kind, prompt)

    def prompts(self, kind: str) -> list[str]:
        with self.lock:
            return [p for k, p in self.seen if k == kind]


_stop_lock = threading.Lock()
_stopped: weakref.WeakSet[ScriptedServer] = weakref.WeakSet()


def stop(srv: ScriptedServer) -> None:
    """Stop a server (the endpoint dies); safe to call again, from any thread."""
    with _stop_lock:
        if srv in _stopped:
            return
        _stopped.add(srv)
    srv.__exit__()


def topics(n: int) -> list[str]:
    return [f"Describe topic-{i:02d} in plain words for a curious reader." for i in range(n)]


# --- running the pipeline in-process, with short retry waits ------------------------------------------------


def evol_run(*args: str, env: dict | None = None, engine: str = "local"):
    """``python -m evol run ARGS`` as a user runs it; on the local engine unless told (Prefect takes seconds to start)."""
    return run_cli("run", *args, env=env, engine=engine)


def write_seeds(path: Path, seeds: list) -> Path:
    path.write_text("".join(json.dumps(s if isinstance(s, dict) else {"instruction": s}) + "\n" for s in seeds))
    return path


def run_inproc(base_url: str, seeds: list, out: Path, *, key: str | None = None, max_wait: float = 0.05, **cfg) -> dict:
    """run_pipeline as ``evol run`` calls it, except that retries wait at most ``max_wait`` seconds and the seeds
    are left out of the dataset unless ``include_seeds=True``; returns the manifest's data as manifest.json holds it."""
    seeds_file = write_seeds(out.parent / f"{out.name}-seeds.jsonl", seeds)
    config = RunConfig(
        **{
            "seeds": seeds_file,
            "out": out,
            "base_url": base_url,
            "rounds": 1,
            "concurrency": 2,
            "timeout": 2.0,
            "max_retries": 3,
            # these tests count what each evolution costs and where it fails; the seeds' own answers (in the
            # dataset by default, as WizardLM's is) would add one respond call per seed, so a test about seeds
            # asks for them with include_seeds=True
            "include_seeds": False,
            **cfg,
        }
    )

    async def go():
        chat = OpenAIChat(
            base_url,
            key,
            timeout=config.timeout,
            max_retries=config.max_retries,
            concurrency=config.concurrency,
            max_wait=max_wait,
        )
        try:
            with RunDir(out) as run_dir:
                return (await run_pipeline(config, chat, MODELS, run_dir)).dump()
        finally:
            await chat.aclose()

    return asyncio.run(go())


def ledger(out: Path) -> dict[tuple[int, int], tuple[str, str, str]]:
    """(seed index, round) -> (outcome, rule, detail) from the run folder; every attempt appears exactly once."""
    rows: dict[tuple[int, int], tuple[str, str, str]] = {}
    for r in read_jsonl(out / "records.jsonl"):
        if r["round"] == 0:  # a seed's own answer (--include-seeds), not an attempt
            continue
        assert (r["seed_index"], r["round"]) not in rows
        rows[(r["seed_index"], r["round"])] = ("kept", "", "")
    for r in read_jsonl(out / "rejected.jsonl"):
        if r["round"] == 0:  # skipped at load time, or a seed's own answer rejected
            continue
        assert (r["seed_index"], r["round"]) not in rows
        assert r["rule"] and r["detail"], r  # a rejection always says which rule and why
        rows[(r["seed_index"], r["round"])] = (r["kind"], r["rule"], r["detail"])
    return rows


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def assert_accounted(out: Path, n_seeds: int, rounds: int = 1) -> dict:
    """The manifest and the files agree, and every seed has an outcome in every round."""
    m = manifest(out)
    rows = ledger(out)
    assert set(rows) == {(i, r) for i in range(n_seeds) for r in range(1, rounds + 1)}
    c = m["counts"]
    assert c["balanced"] and c["seeds"] == n_seeds and c["rounds_done"] == rounds
    outcomes = [v[0] for v in rows.values()]
    for kind in ("kept", "eliminated", "duplicate", "failed"):
        assert c[kind] == outcomes.count(kind), kind
    return rows
