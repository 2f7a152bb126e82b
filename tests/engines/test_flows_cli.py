"""``python -m evol run`` on the Prefect engine, as a user runs it: through the flow by default, bad input and a
fatal backend error in one sentence, and kill -9 mid-run resuming from checkpoints and cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("prefect")


from ..e2e.test_crash import uninterrupted  # noqa: F401 - the never-killed run that a killed one must equal
from ..flowkit import (
    CHUNK,
    KEY,
    N_SEEDS,
    ROOT,
    ROUNDS,
    SEEDS,
    same_outputs,
)

pytestmark = pytest.mark.slow  # subprocess runs with their own temporary Prefect server


def _cli_run(*args: str, home: Path, timeout: float = 300, quiet: bool = False) -> subprocess.CompletedProcess:
    """``python -m evol run ARGS`` on its default engine, with no Prefect server anywhere (ephemeral mode)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_") and k != "EVOL_ENGINE"}
    env["PREFECT_HOME"] = str(home)
    # a user behind a proxy: neither the temporary Prefect server nor the endpoint on loopback goes through it
    env.update(HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9", NO_PROXY="")
    return subprocess.run(
        [sys.executable, "-m", "evol", *(["--quiet"] if quiet else []), "run", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=timeout,
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
    links = [line for line in r.stderr.splitlines() if "View at " in line]
    assert len(links) == 2 and len(set(links)) == 2, links  # the flow's and the subflow's link, once each
    assert "Traceback" not in r.stderr and "Error" not in r.stderr, r.stderr[-3000:]
    assert json.loads(r.stdout.splitlines()[-1])["dataset_rows"] > 0
    same_outputs(reference, out)


def test_cli_quiet_keeps_prefect_to_warnings(endpoint, tmp_path):
    """``--quiet`` on the Prefect engine: no flow-run chatter on stderr (importing Prefect resets its loggers' levels),
    the result line on stdout."""
    r = _cli_run(
        "--seeds",
        str(SEEDS),
        "--limit",
        "2",
        "--rounds",
        "1",
        "--base-url",
        endpoint.base_url,
        "--out",
        str(tmp_path / "quiet"),
        home=tmp_path / "prefect-home",
        quiet=True,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr.strip() == "", r.stderr[-3000:]
    assert json.loads(r.stdout.splitlines()[-1])["dataset_rows"] > 0


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
    from ..e2e.test_crash import (
        ARGS,
        RUN_TIMEOUT,
        LedgerServer,
        cached_rows,
        check_same_run,
        kill9,
        stateless,
        wait_for,
    )

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
            # the whole run's time limit: Prefect's start alone takes seconds, more on a loaded machine
            wait_for(lambda: srv.phase == "hold", "60% of the calls to be answered", proc, timeout=RUN_TIMEOUT)
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
        if b"evol.engines.prefect._server_child" in argv and str(pid).encode() in argv:
            found.append(int(proc.name))
    return found
