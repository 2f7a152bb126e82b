"""The Prefect flows against the scripted server: same dataset as the plain run, resume, Dask, schedules.

One Prefect test server for the whole session (it takes seconds to start); one scripted endpoint for the
module, so that every run talks to the same endpoint identity and the call cache means what it says.
The scripted answers depend only on the request, never on call order or history, as a resumed run needs.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("prefect")

from evol.config import build_config
from evol.errors import BackendError, ConfigError
from evol.manifest import Chunks, Manifest
from evol.run import execute
from evol.seeds import load_seeds
from evol.testing.server import Reply, ScriptedServer, last_user

from .test_crash import uninterrupted  # noqa: F401 - the never-killed run that a killed one must equal

pytestmark = pytest.mark.slow  # a Prefect server and flows (3-120 s each)

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "datasets" / "seeds" / "self_instruct_seed_tasks.jsonl"
KEY = "sk-flowtest-0123456789abcdef"
GIVEN = "#Given Prompt#:\n"
ROUNDS = 2
N_SEEDS = 14
CHUNK = 4  # 4 chunks per round: several chunk tasks, run two at a time


def _h(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


def answer(request: dict, mode: str = "rich") -> Reply:
    """A deterministic Evol-Instruct endpoint.

    ``rich``: some of every outcome (kept, eliminated, near duplicate, failed with HTTP 400); ``clean``: the
    same without failures; ``simple``: every evolution kept, three calls per seed and round.
    """
    prompt = last_user(request)
    if GIVEN in prompt:
        parent = prompt.split(GIVEN, 1)[1].rsplit("\n\n#", 1)[0]
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
    from evol.flows.evol_flow import evol_flow

    return asyncio.run(evol_flow(config=cfg.explicit_dict(), chunk_size=CHUNK, **kwargs))  # as run_with_prefect


REFERENCE_REQUESTS: list[str] = []  # every request of the reference run, as JSON


@pytest.fixture(scope="module")
def reference(endpoint, tmp_path_factory) -> Path:
    """The plain, Prefect-free run (``evol.run.execute``) that every flow run must equal."""
    out = tmp_path_factory.mktemp("reference")
    first = len(endpoint.requests)
    manifest = asyncio.run(execute(config(endpoint, out)))
    REFERENCE_REQUESTS.extend(_body(r) for r in endpoint.requests[first:])
    c = manifest.counts
    # the script must give the flows something to get wrong: every kind of outcome
    assert c.kept and c.eliminated and c.duplicate and c.failed, c
    return out


def same_outputs(a: Path, b: Path) -> None:
    for name in ("dataset.json", "records.jsonl", "rejected.jsonl"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


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
    assert data["chunks"] == {"run": ROUNDS * 4, "restored": 0}
    assert "chunks" not in json.loads((out / "manifest.json").read_text())  # the file is written before
    rounds = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert rounds == [f"round-{n}" for n in range(1, ROUNDS + 1)]
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
        assert manifest.chunks == Chunks(run=0, restored=ROUNDS * 4)
    finally:
        script.mode = "rich"


def test_a_checkpoint_gone_after_the_first_look_is_run_again(harness, endpoint, tmp_path, monkeypatch):
    """Checkpoints are read when a round starts and again in their turn (not held meanwhile): one that
    vanished in between is run after all, and the outputs do not change."""
    from evol.flows import chunks

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
        assert manifest.chunks == Chunks(run=1, restored=ROUNDS * 4 - 1)
        assert endpoint.chat_count() == before  # the chunk ran, its calls answered by the cache
        assert manifest.status == "complete" and manifest.counts.balanced
        assert (out / "dataset.json").read_bytes() == dataset
    finally:
        script.mode = "rich"


def test_dask_local_cluster_gives_the_same_dataset(harness, endpoint, reference, tmp_path):
    pytest.importorskip("prefect_dask")
    out = tmp_path / "dask"
    manifest = run_flow(config(endpoint, out), dask_workers=2)
    assert manifest.chunks is not None and manifest.chunks.run == ROUNDS * 4
    same_outputs(reference, out)


def test_scheduled_runs_spend_only_on_new_seeds(harness, endpoint, tmp_path):
    """Two runs with the schedule's parameters over a seed folder that grew in between."""
    from evol.flows.evol_flow import evol_flow
    from evol.flows.serving import deployment_parameters

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
        assert manifest.chunks.restored == ROUNDS * (N_SEEDS // CHUNK)  # only the last chunk changed

        # and what was kept is what a fresh plain run over the grown folder gives
        fresh = tmp_path / "fresh"
        asyncio.run(execute(cfg.model_copy(update={"out": fresh})))
        same_outputs(fresh, tmp_path / "nightly")
    finally:
        endpoint.script_obj.mode = "rich"


def test_flow_parameters_refuse_a_key(harness):
    from evol.flows.evol_flow import FlowConfig

    with pytest.raises(ValueError, match="EVOL_API_KEY"):
        FlowConfig(seeds=SEEDS, api_key="sk-nope-123456")
    assert "api_key" not in FlowConfig.model_json_schema()["properties"]


def test_serve_needs_a_prefect_server_and_one_schedule(endpoint, tmp_path):
    from evol.flows.serving import serve

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


def _cli_run(*args: str, home: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m evol run ARGS`` on its default engine, with no Prefect server anywhere (ephemeral mode)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_") and k != "EVOL_ENGINE"}
    env["PREFECT_HOME"] = str(home)
    # a user behind a proxy: neither the temporary Prefect server nor the endpoint on loopback goes through it
    env.update(HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9", NO_PROXY="")
    return subprocess.run(
        [sys.executable, "-m", "evol", "run", *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout
    )


def test_cli_runs_through_the_flow_by_default_and_ends_cleanly(endpoint, reference, tmp_path):
    """``python -m evol run``: a Prefect flow run on a temporary server, the plain run's outputs, a clean end."""
    out = tmp_path / "ephemeral"
    r = _cli_run(
        "--seeds",
        str(SEEDS),
        "--limit",
        str(N_SEEDS),
        "--rounds",
        str(ROUNDS),
        "--base-url",
        endpoint.base_url,
        "--out",
        str(out),
        "--concurrency",
        "4",
        "--chunk-size",
        str(CHUNK),
        home=tmp_path / "prefect-home",
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Beginning flow run" in r.stderr and "evol-pipeline" in r.stderr  # it went through the flows
    assert "Traceback" not in r.stderr and "Error" not in r.stderr, r.stderr[-3000:]
    assert json.loads(r.stdout.splitlines()[-1])["dataset_rows"] > 0
    same_outputs(reference, out)


def test_cli_bad_input_fails_before_prefect_starts(endpoint, tmp_path):
    r = _cli_run(
        "--seeds",
        str(tmp_path / "missing.jsonl"),
        "--base-url",
        endpoint.base_url,
        "--out",
        str(tmp_path / "r"),
        home=tmp_path / "prefect-home",
        timeout=120,
    )
    assert r.returncode == 3
    assert r.stderr.strip() == f"evol: error: Seed file {tmp_path / 'missing.jsonl'} does not exist."


def test_cli_fatal_backend_error_mid_run_is_one_sentence(endpoint, reference, tmp_path):
    """A 401 part-way through a flow run: exit 4, the reason once, no Prefect traceback, work so far written."""
    script = endpoint.script_obj
    with script.lock:
        script.calls, script.fatal_after = 0, 10
    try:
        out = tmp_path / "fatal"
        r = _cli_run(
            "--seeds",
            str(SEEDS),
            "--limit",
            str(N_SEEDS),
            "--rounds",
            str(ROUNDS),
            "--base-url",
            endpoint.base_url,
            "--out",
            str(out),
            "--concurrency",
            "1",
            "--chunk-size",
            str(CHUNK),
            "--seed",
            "7",
            home=tmp_path / "prefect-home",
        )
    finally:
        with script.lock:
            script.fatal_after = None
    assert r.returncode == 4, r.stderr[-3000:]
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    errors = [line for line in r.stderr.splitlines() if line.startswith("evol: error:")]
    assert len(errors) == 1 and "API key" in errors[0], r.stderr[-3000:]
    assert KEY not in r.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "stopped" and "API key" in manifest["reason"]


def test_cli_flow_killed_mid_run_resumes_from_checkpoints_and_cache(tmp_path, uninterrupted):  # noqa: F811 - the fixture
    """kill -9 of ``python -m evol run`` on the Prefect engine, then the same command: no answered call is sent
    again, finished chunks come back from their checkpoints, and the dataset is the uninterrupted run's."""
    from .test_crash import ARGS, LedgerServer, cached_rows, check_same_run, kill9, stateless, wait_for

    full, every = uninterrupted
    out = tmp_path / "crashed"
    args = [a for a in ARGS if a not in ("--engine", "local")]
    args += ["--chunk-size", "10", "--out", str(out)]  # 100 seeds: 10 chunk tasks a round, two at a time
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PREFECT_") and k not in ("EVOL_ENGINE", "EVOL_API_KEY", "OPENAI_API_KEY")
    }
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")

    def start(url: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "evol", *args, "--base-url", url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
        )

    with LedgerServer(stateless, hold_after=int(0.6 * len(every))) as srv:
        proc = start(srv.base_url)
        try:  # held at 60% of the calls: round 1's chunks are checkpointed, round 2 is under way
            wait_for(lambda: srv.phase == "hold", "60% of the calls to be answered", proc)
            wait_for(
                lambda: srv.writing == 0 and cached_rows(out) == len(srv.answered),
                "the client to store every answer it received",
                proc,
            )
            assert _prefect_servers_of(proc.pid)  # its temporary Prefect server...
            kill9(proc)
            wait_for(lambda: not _prefect_servers_of(proc.pid), "the temporary Prefect server to die with its run")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        answered_before, sent_before = srv.snapshot()
        srv.phase = "resume"
        done = sorted((out / "checkpoints" / "round-1").glob("chunk-*.jsonl"))
        assert len(done) == 10, done  # round 1 finished before the hold
        # a chunk with a failed item runs again (its answered calls from the cache); the others are restored
        clean = [p for p in done if '"kind": "failed"' not in p.read_text()]
        assert 0 < len(clean) < len(done)
        again = start(srv.base_url)
        _, err = again.communicate(timeout=300)
        assert again.returncode == 0, err[-3000:]
        _, sent = srv.snapshot()
        sent_after = sent[len(sent_before) :]

    before, after, one_run = Counter(answered_before), Counter(sent_after), Counter(every)
    assert before + after == one_run, f"paid twice: {sum((before + after - one_run).values())}"
    assert f"round 1: 10 chunks, {len(clean)} restored from checkpoints, {10 - len(clean)} to run" in err, err[-3000:]
    m = check_same_run(out, full, every)
    assert m["cache"]["misses"] == len(sent_after)


def _prefect_servers_of(pid: int) -> list[int]:
    """Pids of the temporary Prefect servers that the evol process ``pid`` started."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"evol.flows._server_child" in argv and str(pid).encode() in argv:
            found.append(int(proc.name))
    return found


def test_options_left_unset_stay_unset_through_the_flow_parameters(harness):
    """The embedded model's defaults (tune_for_local) fill only what the user left unset, on this engine too:
    rebuilt from every value, the flow's config took Prefect's 32 connections and 2,048 tokens for choices."""
    from evol.config import RunConfig
    from evol.flows.evol_flow import FlowConfig
    from evol.flows.serving import deployment_parameters
    from evol.local_setup import tune_for_local

    cfg = build_config({"sampling": {"temperature": 0.5}}, {"seeds": SEEDS, "concurrency": 5})
    expected = tune_for_local(cfg)
    assert (expected.concurrency, expected.sampling.temperature, expected.sampling.max_tokens) == (5, 0.5, 256)
    for params in (cfg.explicit_dict(), deployment_parameters(cfg)["config"]):
        crossed = RunConfig(**FlowConfig(**params).explicit_dict())  # what evol_flow rebuilds from its parameter
        tuned = tune_for_local(crossed)
        assert tuned.model_dump(exclude={"out"}) == expected.model_dump(exclude={"out"})
