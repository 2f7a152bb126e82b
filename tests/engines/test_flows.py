"""The Prefect flows against the scripted server: same dataset as the plain run, resume, Dask, schedules.

One Prefect test server for the whole session (it takes seconds to start); one scripted endpoint for the
module (tests/flowkit.py), so that every run talks to the same endpoint identity and the call cache means what
it says. The command line on the Prefect engine is tested in test_flows_cli.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("prefect")

from evol.config import build_config
from evol.engines.local import execute
from evol.errors import BackendError, ConfigError
from evol.rundir.manifest import Chunks
from evol.seeds import load_seeds
from evol.testing.server import ScriptedServer, last_user

from ..flowkit import (
    CHUNK,
    CHUNK_ROUNDS,
    KEY,
    N_SEEDS,
    REFERENCE_REQUESTS,
    ROOT,
    ROUNDS,
    SEEDS,
    _body,
    answer,
    config,
    run_flow,
    same_outputs,
)

pytestmark = pytest.mark.slow  # a Prefect server and flows (3-120 s each)


@pytest.fixture(scope="session")
def harness():
    from prefect.settings import PREFECT_SERVER_ANALYTICS_ENABLED, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    # the test server's telemetry heartbeat collides with the first writes ("database is locked" noise)
    with (
        temporary_settings({PREFECT_SERVER_ANALYTICS_ENABLED: False}),
        prefect_test_harness(server_startup_timeout=120),
    ):
        yield


def test_flow_equals_plain_run_byte_for_byte(harness, endpoint, reference, tmp_path):
    out = tmp_path / "flow"
    manifest = run_flow(config(endpoint, out))
    same_outputs(reference, out)
    plain = json.loads((reference / "manifest.json").read_text())
    data = manifest.dump()
    assert manifest.status == "complete"
    assert data["run_id"] == plain["run_id"]
    assert data["counts"] == plain["counts"]
    for key in ("calls", "calls_failed", "tokens_by_stage", "tokens_by_model"):
        assert data["usage"][key] == plain["usage"][key], key
    assert data["chunks"] == {"run": CHUNK_ROUNDS * 4, "restored": 0}
    assert "chunks" not in json.loads((out / "manifest.json").read_text())  # the file is written before
    rounds = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert rounds == [*(f"round-{n}" for n in range(1, ROUNDS + 1)), "seeds"]  # the seeds' chunks: the default
    assert len(list((out / "checkpoints" / "round-1").glob("chunk-*.jsonl"))) == 4

    # the key reached the endpoint (from the environment) and nothing Prefect stores
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.sorting import FlowRunSort

    async def stored() -> str:
        async with get_client() as client:
            runs = await client.read_flow_runs(limit=200, sort=FlowRunSort.ID_DESC)
            # the raw endpoint: this client version sends null filters that the server refuses
            arts = (await client._client.post("/artifacts/filter", json={"limit": 200})).json()
        return json.dumps([r.parameters for r in runs], default=str) + json.dumps([a["data"] for a in arts])

    text = asyncio.run(stored())
    assert KEY not in text
    assert "| respond |" in text and "| dedup | duplicate | near_duplicate |" in text  # the summary artifact
    assert all(
        KEY not in p.read_text(errors="replace") for p in out.rglob("*") if p.is_file() and p.suffix != ".sqlite"
    )

    # run again: every chunk is restored from its checkpoint, not one call is made, same bytes
    before = endpoint.chat_count()
    again = run_flow(config(endpoint, out))
    assert endpoint.chat_count() - before == _failed_calls(out)  # only failed items are asked again
    assert again.chunks is not None and again.chunks.restored >= 1
    same_outputs(reference, out)


def _failed_calls(out: Path) -> int:
    return sum(1 for line in (out / "rejected.jsonl").read_text().splitlines() if json.loads(line)["kind"] == "failed")


def test_stopped_run_resumes_without_repeating_finished_calls(harness, endpoint, reference, tmp_path):
    script = endpoint.script_obj
    out = tmp_path / "crashed"
    full = Counter(REFERENCE_REQUESTS)

    script.answered.clear()
    script.calls, script.fatal_after = 0, len(REFERENCE_REQUESTS) // 2  # the key is revoked half-way: 401 stops the run
    with pytest.raises(BackendError, match="401"):
        run_flow(config(endpoint, out))
    answered = Counter(script.answered)
    assert answered and answered.total() < full.total()
    assert json.loads((out / "manifest.json").read_text())["status"] == "stopped"
    finished = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (out / "checkpoints").rglob("chunk-*.jsonl")}
    assert finished, "no chunk finished before the 401"

    script.fatal_after = None
    first = len(endpoint.requests)
    manifest = run_flow(config(endpoint, out))
    again = Counter(_body(r) for r in endpoint.requests[first:])
    # what was answered before the stop plus what the restart asked is exactly one full run: nothing paid twice
    # (bodies, not calls: two calls can share a body, e.g. the same judge question in two rounds)
    assert answered + again == full
    assert manifest.status == "complete"
    untouched = [p for p in finished if not _has_failed(p)]
    assert untouched and manifest.chunks is not None and manifest.chunks.restored >= len(untouched)
    for path in untouched:
        assert (path.stat().st_ino, path.stat().st_mtime_ns) == finished[path], f"{path.name} was run again"
    same_outputs(reference, out)


def _has_failed(path: Path) -> bool:
    return any('"kind": "failed"' in line for line in path.read_text().splitlines()[1:])


def test_checkpoints_alone_skip_finished_chunks(harness, endpoint, reference, tmp_path):
    """Even with the call cache gone, a finished chunk costs nothing: its checkpoint is the proof of work."""
    script = endpoint.script_obj
    script.mode = "clean"  # so that every chunk is finished for good
    try:
        out = tmp_path / "no-cache"
        run_flow(config(endpoint, out))
        (out / "calls.sqlite").unlink()
        before = endpoint.chat_count()
        manifest = run_flow(config(endpoint, out))
        assert endpoint.chat_count() == before
        assert manifest.chunks == Chunks(run=0, restored=CHUNK_ROUNDS * 4)
    finally:
        script.mode = "rich"


def test_a_checkpoint_gone_after_the_first_look_is_run_again(harness, endpoint, tmp_path, monkeypatch):
    """Checkpoints are read when a round starts and again in their turn (not held meanwhile): one that
    vanished in between is run after all, and the outputs do not change."""
    from evol.engines.prefect import chunks

    script = endpoint.script_obj
    script.mode = "clean"
    try:
        out = tmp_path / "vanishing"
        run_flow(config(endpoint, out))
        dataset = (out / "dataset.json").read_bytes()
        real, looks = chunks.read_checkpoint, Counter()

        def read(job):
            looks[(job.round_no, job.chunk_no)] += 1
            if (job.round_no, job.chunk_no) == (2, 1) and looks[(2, 1)] == 2:
                return None  # deleted between the round's first look and its turn
            return real(job)

        monkeypatch.setattr(chunks, "read_checkpoint", read)
        before = endpoint.chat_count()
        manifest = run_flow(config(endpoint, out))
        assert manifest.chunks == Chunks(run=1, restored=CHUNK_ROUNDS * 4 - 1)
        assert endpoint.chat_count() == before  # the chunk ran, its calls answered by the cache
        assert manifest.status == "complete" and manifest.counts.balanced
        assert (out / "dataset.json").read_bytes() == dataset
    finally:
        script.mode = "rich"


def test_dask_local_cluster_gives_the_same_dataset(harness, endpoint, reference, tmp_path):
    pytest.importorskip("prefect_dask")
    out = tmp_path / "dask"
    manifest = run_flow(config(endpoint, out), dask_workers=2)
    assert manifest.chunks is not None and manifest.chunks.run == CHUNK_ROUNDS * 4
    same_outputs(reference, out)
    # the worker processes read each round's dedup index from the run folder: the same calls made, and saved
    plain = json.loads((reference / "manifest.json").read_text())["usage"]
    data = manifest.dump()["usage"]
    for key in ("calls", "calls_failed", "calls_saved"):
        assert data[key] == plain[key], key
    assert plain["calls_saved"]["respond"] > 0
    assert sorted(p.name for p in out.glob("checkpoints/round-*/kept.index")) == ["kept.index"] * ROUNDS


def test_math_lines_on_the_flow_equal_the_plain_run(harness, endpoint, tmp_path):
    """WizardMath's two lines (a pool of one entry per seed and line) settle alike in chunk tasks."""
    plain, flow = tmp_path / "plain", tmp_path / "flow"
    asyncio.run(execute(config(endpoint, plain, profile="math")))
    manifest = run_flow(config(endpoint, flow, profile="math"))
    same_outputs(plain, flow)
    rows = [json.loads(x) for f in ("records.jsonl", "rejected.jsonl") for x in (flow / f).read_text().splitlines()]
    assert Counter(r.get("line") for r in rows if r["round"] > 0) == {
        "downward": N_SEEDS * ROUNDS,
        "upward": N_SEEDS * ROUNDS,
    }
    assert manifest.counts.balanced and manifest.counts.attempts == N_SEEDS * 2 * ROUNDS


def test_scheduled_runs_spend_only_on_new_seeds(harness, endpoint, tmp_path):
    """Two runs with the schedule's parameters over a seed folder that grew in between."""
    from evol.engines.prefect.evol_flow import evol_flow
    from evol.engines.prefect.serving import deployment_parameters

    rows = [json.loads(line) for line in SEEDS.read_text().splitlines()[: N_SEEDS + 3]]
    folder = tmp_path / "seeds"
    folder.mkdir()
    (folder / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:N_SEEDS]))
    cfg = build_config(
        {},
        {
            "seeds": folder,
            "rounds": ROUNDS,
            "base_url": endpoint.base_url,
            "concurrency": 4,
            "out": tmp_path / "nightly",
        },
    )
    params = deployment_parameters(cfg, chunk_size=CHUNK)
    assert KEY not in json.dumps(params) and Path(params["config"]["out"]).is_absolute()

    endpoint.script_obj.mode = "simple"  # every evolution kept: a seed costs exactly 3 calls a round
    try:
        asyncio.run(evol_flow(**params))
        (folder / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[N_SEEDS:]))
        first = len(endpoint.requests)
        manifest = asyncio.run(evol_flow(**params))
        new = [last_user(r) for r in endpoint.requests[first:]]
        new_seeds = [s.instruction for s in load_seeds(folder / "b.jsonl").seeds]
        assert len(new) == 3 * ROUNDS * len(new_seeds)
        assert all(any(s in p for s in new_seeds) for p in new), "a seed of the first night was paid again"
        assert manifest.counts.seeds == N_SEEDS + 3
        assert manifest.chunks is not None
        assert manifest.chunks.restored == CHUNK_ROUNDS * (N_SEEDS // CHUNK)  # only the last chunk changed

        # and what was kept is what a fresh plain run over the grown folder gives
        fresh = tmp_path / "fresh"
        asyncio.run(execute(cfg.model_copy(update={"out": str(fresh)})))  # model_copy does not validate: a str
        same_outputs(fresh, tmp_path / "nightly")
    finally:
        endpoint.script_obj.mode = "rich"


def test_flow_parameters_refuse_a_key(harness):
    from evol.engines.prefect.evol_flow import FlowConfig

    with pytest.raises(ValueError, match="EVOL_API_KEY"):
        FlowConfig(seeds=SEEDS, api_key="sk-nope-123456")
    assert "api_key" not in FlowConfig.model_json_schema()["properties"]


def test_serve_needs_a_prefect_server_and_one_schedule(endpoint, tmp_path):
    from evol.engines.prefect.serving import serve

    cfg = config(endpoint, tmp_path / "x")
    with pytest.raises(ConfigError, match="--cron or --interval"):
        serve(cfg)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    r = subprocess.run(
        [sys.executable, "-m", "evol", "serve", "--seeds", str(SEEDS), "--cron", "0 3 * * *"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert r.returncode == 2 and "prefect server start" in r.stderr


def test_options_left_unset_stay_unset_through_the_flow_parameters(harness):
    """The embedded model's defaults (tune_for_local) fill only what the user left unset, on this engine too:
    rebuilt from every value, the flow's config took Prefect's 32 connections and 2,048 tokens for choices."""
    from evol.config import RunConfig
    from evol.engines.prefect.evol_flow import FlowConfig
    from evol.engines.prefect.serving import deployment_parameters
    from evol.llm.local.setup import tune_for_local

    cfg = build_config({"sampling": {"temperature": 0.5}}, {"seeds": SEEDS, "concurrency": 5})
    expected = tune_for_local(cfg)
    assert (expected.concurrency, expected.sampling.temperature, expected.sampling.max_tokens) == (5, 0.5, 256)
    for params in (cfg.explicit_dict(), deployment_parameters(cfg)["config"]):
        crossed = RunConfig(**FlowConfig(**params).explicit_dict())  # what evol_flow rebuilds from its parameter
        tuned = tune_for_local(crossed)
        assert tuned.model_dump(exclude={"out"}) == expected.model_dump(exclude={"out"})


def test_a_key_given_in_code_reaches_the_chunk_tasks(harness, tmp_path, monkeypatch):
    """``run_with_prefect`` with the key in the config and none in the environment: the chunk tasks on the flow's
    threads get it with the context Prefect copies into them (never as a parameter), and every call carries it."""
    from evol.engines.prefect.evol_flow import run_with_prefect

    other = "sk-in-code-0123456789abcdef"
    for name in ("EVOL_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with ScriptedServer(lambda request: answer(request, "simple"), require_key=other) as srv:
        manifest = run_with_prefect(config(srv, tmp_path / "o", api_key=other, rounds=1), chunk_size=CHUNK)
        sent = set(srv.auth_headers)
    assert manifest.counts.failed == 0 and manifest.counts.kept > 0
    assert sent == {f"Bearer {other}"}


def test_the_prefect_path_reads_the_seeds_once(harness, tmp_path, monkeypatch):
    """``evol run`` on Prefect checks the inputs in the CLI (before Prefect starts), in the flow (a scheduled run has no
    CLI) and in the pipeline subflow (which needs them): the seed file is read once for all three."""
    import evol.evolve.run as run
    from evol.cli.main import main

    reads: list[tuple] = []
    real = run.load_seeds

    def counted(*args, **kwargs):
        reads.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(run, "load_seeds", counted)
    with ScriptedServer(lambda request: answer(request, "simple")) as srv:
        argv = ["-q", "run", "--seeds", str(SEEDS), "--limit", "4", "--rounds", "1", "--base-url", srv.base_url]
        assert main([*argv, "--out", str(tmp_path / "o"), "--engine", "prefect", "--chunk-size", "2"]) == 0
    assert len(reads) == 1
    assert json.loads((tmp_path / "o" / "manifest.json").read_text())["counts"]["kept"] == 4
