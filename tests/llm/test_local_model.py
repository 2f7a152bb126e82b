"""The embedded default on the real model (the ``local`` extra: llama.cpp's server and SmolLM2-135M): a run end to
end, Ctrl-C and kill -9 leave no server behind, the user's environment cannot reconfigure it, a dead server stops
the run, the same call gets the same answer, the build is CPU-portable. The pieces that need no model are in
test_local.py.

These tests skip when the 'local' extra is missing, unless EVOL_REQUIRE_LOCAL=1 (CI) makes that a failure. Server
processes are found through a marker in their environment, so other tests' servers (and other people's) never
count."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from evol.errors import ConfigError
from evol.llm.local import server as local
from evol.llm.local import setup as local_setup

from ..conftest import ROOT, SEEDS, run_cli

MARKER = "EVOL_TEST_LOCAL_MARKER"


# --- the real embedded model --------------------------------------------------------------------------------


@pytest.fixture
def local_extra():
    """Skip (or, with EVOL_REQUIRE_LOCAL=1, fail) when the 'local' extra is not installed."""
    try:
        local_setup.require_extra(need_default_model=True)
    except ConfigError as exc:
        if os.environ.get("EVOL_REQUIRE_LOCAL") == "1":
            pytest.fail(f"EVOL_REQUIRE_LOCAL=1 but the embedded model cannot run: {exc}")
        pytest.skip(f"the 'local' extra is not installed ({exc})")
    if not Path("/proc/self/environ").exists():
        pytest.skip("finding server processes needs Linux /proc")


def servers(marker: str) -> list[int]:
    """Live (not zombie) llama.cpp servers started under ``marker``."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmdline = (d / "cmdline").read_bytes()
            environ = (d / "environ").read_bytes()
            state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if (
            cmdline.split(b"\0")[1:3] == [b"-m", b"evol.llm.local.child"]
            and f"{MARKER}={marker}".encode() in environ
            and state != "Z"
        ):
            found.append(int(d.name))
    return found


def port_of(pid: int) -> int:
    args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    return int(args[args.index(b"--port") + 1])


def answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def wait_for(condition, what: str, limit: float = 120.0):
    """Poll until ``condition()`` is truthy; a deadline against hanging, not a speed check."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"gave up waiting for {what}")


def clean_env(marker: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "EVOL_API_KEY")}
    return {**env, MARKER: marker, **extra}


@pytest.mark.slow
def test_run_on_the_embedded_model_end_to_end(local_extra, tmp_path):
    marker, out = uuid.uuid4().hex, tmp_path / "run"
    proc = run_cli(
        "run",
        "--seeds",
        str(SEEDS),
        "--limit",
        "3",
        "--rounds",
        "1",
        "--out",
        str(out),
        env={MARKER: marker},
        engine=None,
    )  # the quick start's path: the default engine, Prefect
    assert proc.returncode == 0, proc.stderr
    assert "embedded local model SmolLM2-135M-Instruct" in proc.stderr
    assert servers(marker) == []  # stopped and reaped before the run exited

    manifest = json.loads((out / "manifest.json").read_text())
    c = manifest["counts"]
    assert manifest["status"] == "complete"
    assert c["seeds"] == 3 and c["attempts"] == 3 * 1 and c["balanced"] is True
    assert manifest["backend"]["identity"].startswith("local:SmolLM2-135M-Instruct.Q4_1.gguf:")
    assert manifest["usage"]["calls"]["evolve"] == 3  # a real model answered
    # the estimate made before the first call, from the rates measured on this model, holds the calls it made
    est, made = manifest["estimate"], sum(manifest["usage"]["calls"].values())
    assert est["source"] == "measurements of the embedded model"
    assert est["calls"]["low"] <= made <= est["calls"]["high"], (made, est["calls"])

    dataset = json.loads((out / "dataset.json").read_text())
    assert isinstance(dataset, list) and len(dataset) == c["dataset_rows"]
    for row in dataset:
        assert set(row) == {"instruction", "output"}
        assert isinstance(row["instruction"], str) and isinstance(row["output"], str)

    # the same command into a new folder, on the other engine: no answer comes from a cache, yet each call
    # samples the same answer (its own seed), so the datasets are the same byte for byte
    again = tmp_path / "again"
    proc = run_cli(
        "run",
        "--seeds",
        str(SEEDS),
        "--limit",
        "3",
        "--rounds",
        "1",
        "--out",
        str(again),
        env={MARKER: marker},
        engine="local",
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads((again / "manifest.json").read_text())["cache"]["hits"] == 0
    assert (again / "dataset.json").read_bytes() == (out / "dataset.json").read_bytes()
    assert (again / "records.jsonl").read_bytes() == (out / "records.jsonl").read_bytes()


def _as_at_a_terminal() -> None:
    """Ctrl-C as at a terminal: a shell starts background jobs (``pytest &``) with SIGINT ignored, and the
    child would inherit that and never see the signal this test sends."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_ctrl_c_during_a_run_leaves_no_server(local_extra, tmp_path):
    marker, out = uuid.uuid4().hex, tmp_path / "run"
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "evol",
            "run",
            "--seeds",
            str(SEEDS),
            "--limit",
            "20",
            "--rounds",
            "2",
            "--out",
            str(out),
        ],
        env=clean_env(marker),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_as_at_a_terminal,
    )
    try:
        pid = wait_for(lambda: servers(marker), "the run's llama.cpp server")[0]
        wait_for(lambda: answers(port_of(pid)), "the server to answer")
        wait_for(lambda: (out / "calls.sqlite").exists(), "the run to start calling the model")
        run.send_signal(signal.SIGINT)
        _, stderr = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 130, stderr
    assert "interrupted" in stderr
    assert servers(marker) == []


@pytest.mark.parametrize("thread", ["main", "worker"])
@pytest.mark.slow
def test_server_dies_with_a_killed_parent(local_extra, thread):
    """SIGKILL leaves the parent no chance to clean up: the kernel (main thread) or the stdin pipe must."""
    marker = uuid.uuid4().hex
    script = (
        "import threading, time\n"
        "from evol.llm.local.server import LocalServer\n"
        "from evol.llm.local.setup import resolve_model\n"
        "def start():\n"
        "    s = LocalServer(resolve_model(None)).__enter__()\n"
        "    print(s.pid, flush=True)\n"
        f"threading.Thread(target=start).start() if {thread == 'worker'!r} else start()\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], env=clean_env(marker), stdout=subprocess.PIPE, text=True)
    try:
        pid = int(parent.stdout.readline())
        assert servers(marker) == [pid]  # alive, also after the thread that started it has ended
        wait_for(lambda: answers(port_of(pid)), "the server to answer")
    finally:
        parent.kill()
        parent.wait()
    wait_for(lambda: servers(marker) == [], "the orphaned server to exit", limit=30)


@pytest.mark.slow
def test_user_environment_cannot_reconfigure_the_server(local_extra, monkeypatch):
    # llama.cpp's command line reads its LLAMA_ARG_* twins, and Python servers read the plain names: another
    # port, a required key, another model must not reach the embedded server from the user's environment
    settings = {"PORT": "1", "HOST": "0.0.0.0", "API_KEY": "secret", "MODEL": "/nowhere.gguf"}
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
        monkeypatch.setenv(f"LLAMA_ARG_{name}", value)
    monkeypatch.setenv("LLAMA_API_KEY", "secret")
    with local.LocalServer(local_setup.resolve_model(None)) as server:
        assert server.base_url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(server.base_url + "/models", timeout=10) as resp:
            models = json.load(resp)
        assert [m["id"] for m in models["data"]] == [server.model_name]
    assert not server.running


@pytest.mark.slow
def test_serve_local_prints_its_url_and_stops_on_ctrl_c(local_extra):
    marker = uuid.uuid4().hex
    proc = subprocess.Popen(
        [sys.executable, "-m", "evol", "serve-local", "--port", "0"],
        env=clean_env(marker),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1"), url if url else proc.stderr.read()
        with urllib.request.urlopen(url + "/models", timeout=10) as resp:
            assert resp.status == 200
        assert len(servers(marker)) == 1
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert "--base-url " + url in stderr
    assert servers(marker) == []


@pytest.mark.slow
def test_a_dead_server_stops_the_run_instead_of_retrying(local_extra):
    import asyncio

    from evol.config import Sampling
    from evol.errors import FatalBackendError

    async def ask(chat):
        try:
            return await chat.complete(
                [{"role": "user", "content": "Say hi."}],
                model=server.model_name,
                sampling=Sampling(max_tokens=8),
                sample="t",
            )
        finally:
            await chat.aclose()

    def client():
        return local.LocalChat(server, server.base_url, None, identity=server.identity, max_retries=6)

    with local.LocalServer(local_setup.resolve_model(None)) as server:
        assert asyncio.run(ask(client())).usage.completion_tokens > 0
        server._proc.kill()  # a crash, as llama.cpp aborting on an assertion would be
        server._proc.wait()
        with pytest.raises(FatalBackendError, match=r"llama.cpp server stopped"):
            asyncio.run(ask(client()))


@pytest.mark.slow
def test_the_same_call_gets_the_same_answer_whatever_came_before(local_extra):
    import asyncio

    from evol.config import Sampling

    async def answers(server):
        chat = local.LocalChat(server, server.base_url, None, identity=server.identity, seed_calls=True)
        s = Sampling(max_tokens=24)  # temperature 1: sampled, not greedy
        try:
            out = []
            # a prompt right after itself is where llama.cpp would reuse its cached tokens
            for prompt, sample in (
                ("Name a fruit.", "a"),
                ("Name a fruit.", "a"),
                ("Name a river.", "b"),
                ("Name a fruit.", "a"),
            ):
                c = await chat.complete(
                    [{"role": "user", "content": prompt}], model=server.model_name, sampling=s, sample=sample
                )
                out.append(c.text)
            return out
        finally:
            await chat.aclose()

    with local.LocalServer(local_setup.resolve_model(None)) as server:
        a1, a2, _, a3 = asyncio.run(answers(server))
    assert a1 == a2 == a3


@pytest.mark.slow
def test_a_pool_spreads_calls_over_its_servers_and_each_answers_alike(local_extra):
    """Two servers of one thread each: concurrent calls go to both, a call gets the same answer whichever serves
    it (each answers one request at a time, with the call's own seed), and a dead one stops the run."""
    import asyncio

    from evol.config import RunConfig, Sampling
    from evol.errors import FatalBackendError

    s = Sampling(max_tokens=16)  # temperature 1: sampled, not greedy

    async def ask(chat, pool, samples):
        try:
            return await asyncio.gather(
                *(
                    chat.complete(
                        [{"role": "user", "content": "Name a fruit and a colour."}],
                        model=pool.model_name,
                        sampling=s,
                        sample=sample,
                    )
                    for sample in samples
                )
            )
        finally:
            await chat.aclose()

    def client(pool):
        return local.LocalChat(pool, pool.base_url, None, identity=pool.identity, seed_calls=True)

    with local.LocalPool.from_config(RunConfig(seeds=SEEDS), replicas=2) as pool:
        assert len({srv.port for srv in pool.servers}) == 2 and pool.n_threads == 1
        chat = client(pool)
        first = asyncio.run(ask(chat, pool, ["a", "b", "c", "d"]))
        assert chat.served == [2, 2]  # two in flight at once go to different servers
        # the same calls again, each answered by one server alone: the same texts
        for server in pool.servers:
            alone = local.LocalChat(server, server.base_url, None, identity=pool.identity, seed_calls=True)
            again = asyncio.run(ask(alone, pool, ["a", "b", "c", "d"]))
            assert [c.text for c in again] == [c.text for c in first]

        pool.servers[1]._proc.kill()  # a crash of one server
        pool.servers[1]._proc.wait()
        with pytest.raises(FatalBackendError, match=r"llama.cpp server stopped"):
            asyncio.run(ask(client(pool), pool, ["e", "f"]))  # the second call goes to the dead one
    assert not any(srv.running for srv in pool.servers)


def test_the_installed_build_is_portable(local_extra):
    """The wheel's CPU kernels use only instruction sets this machine has, and none of the AVX-512/AMX kernels
    that a native build turns on (and that crashed): a pin moved to a native or wider build fails here."""
    import xllamacpp

    from evol.llm.local.child import X86_NEEDS, _cpu_flags, built_features, missing_cpu_features

    info = xllamacpp.get_system_info()
    built = built_features(info)
    wide = {name for name in built if name.startswith(("AVX512", "AMX", "AVX_VNNI", "SVE"))}
    assert not wide, info
    flags = _cpu_flags()
    if flags is not None:  # x86-64 Linux
        assert built & set(X86_NEEDS), info  # the check knows the features the build reports
        assert missing_cpu_features(info, flags) == []


def test_a_server_that_cannot_start_says_why(local_extra, tmp_path):
    from evol.errors import FatalBackendError

    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF\x03\0\0\0" + b"\0" * 100)  # the right magic, then nothing llama.cpp can load
    server = local.LocalServer(local_setup.resolve_model(broken))
    with pytest.raises(FatalBackendError, match=r"(?i)exited before it was ready.*failed to load model") as err:
        server.__enter__()
    assert "broken.gguf" in str(err.value) and "Traceback" not in str(err.value)
    assert not server.running
