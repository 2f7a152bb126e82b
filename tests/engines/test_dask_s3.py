"""A run folder on S3 (moto's server on loopback) with its chunks on a real ``dask.distributed`` cluster whose
workers are processes of their own, each with its own working folder and temporary folder: all a worker shares
with the flow is the bucket. kill -9 of a worker mid-chunk, then of the flow, then the same command on fresh
workers: nothing answered is paid twice, and the dataset is the one an uninterrupted local run writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from ..conftest import ROOT
from ..e2e import test_crash as crash
from ..e2e.test_crash import LedgerServer, stateless, uninterrupted  # noqa: F401 - the local run to equal

pytest.importorskip("prefect_dask")
pytestmark = pytest.mark.slow  # a scheduler, three workers and two Prefect runs (about a minute)

WORKERS = 3


class Cluster:
    """``dask scheduler`` and ``WORKERS`` ``dask worker`` processes on 127.0.0.1, none sharing a folder."""

    def __init__(self, root: Path, env: dict[str, str]):
        self.root, self.env = root, env
        self.file = root / "scheduler.json"
        self.procs: list[subprocess.Popen] = []
        self.workers: list[subprocess.Popen] = []
        self.started = 0
        self.procs.append(
            self._spawn(
                "scheduler",
                "distributed.cli.dask_scheduler",
                "--host=127.0.0.1",
                "--port=0",
                "--no-dashboard",
                f"--scheduler-file={self.file}",
            )
        )
        crash.wait_for(self.file.exists, "the scheduler to start")
        self.address = json.loads(self.file.read_text())["address"]

    def _spawn(self, name: str, module: str, *args: str) -> subprocess.Popen:
        home = self.root / name
        (home / "tmp").mkdir(parents=True)
        log = open(home / "log.txt", "w")  # noqa: SIM115 - the process's whole life
        return subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=home,
            env={**self.env, "TMPDIR": str(home / "tmp")},
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def add_workers(self, n: int) -> None:
        for _ in range(n):
            self.started += 1
            name = f"worker-{self.started}"
            w = self._spawn(
                name,
                "distributed.cli.dask_worker",
                f"--scheduler-file={self.file}",
                "--nthreads=1",
                "--no-nanny",
                "--no-dashboard",
                f"--local-directory={self.root / name / 'dask'}",
                f"--name={name}",
            )
            self.workers.append(w)
            self.procs.append(w)
        crash.wait_for(lambda: self._count() >= len(self.alive()), "the workers to join")

    def logs(self) -> list[Path]:
        return sorted(self.root.glob("*/log.txt"))

    def alive(self) -> list[subprocess.Popen]:
        return [w for w in self.workers if w.poll() is None]

    def _count(self) -> int:
        import distributed

        with distributed.Client(self.address, timeout=30) as c:
            return len(c.scheduler_info()["workers"])

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)


def _answers_on_s3(s3, prefix: str) -> int:
    n = 0
    for name in s3.names(f"{prefix}/calls"):
        if name.endswith(".jsonl"):
            n += sum(1 for line in s3.read(name).splitlines() if line.strip())
        elif name.endswith(".json"):
            n += 1
    return n


def test_dask_workers_without_a_shared_disk_killed_then_rerun_pay_only_calls_in_flight(s3, tmp_path, uninterrupted):  # noqa: F811
    full, every = uninterrupted
    prefix = "runs/dask"
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PREFECT_") and k not in ("EVOL_API_KEY", "OPENAI_API_KEY")
    }
    env = {**base, **s3.env}
    cluster = Cluster(tmp_path / "cluster", env)
    flow_home = tmp_path / "flow"
    (flow_home / "tmp").mkdir(parents=True)
    flow_env = {**env, "PREFECT_HOME": str(flow_home / "prefect"), "TMPDIR": str(flow_home / "tmp")}
    args = [a for a in crash.ARGS if a not in ("--engine", "local")]
    args += ["--engine", "prefect", "--chunk-size", "10", "--dask-address", cluster.address, "--out", s3.url(prefix)]

    def start(url: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "evol", *args, "--base-url", url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=flow_home,
            env=flow_env,
        )

    try:
        cluster.add_workers(WORKERS)
        with LedgerServer(stateless, hold_after=int(0.4 * len(every))) as srv:
            proc = start(srv.base_url)
            try:
                # Prefect's start, the chunks' way to the workers and one S3 object per answer take 20-30 s here
                # before 40 % of the calls are answered; a slower machine gets the whole run's time limit
                crash.wait_for(
                    lambda: srv.phase == "hold",
                    "the server to hold its replies",
                    proc,
                    timeout=crash.RUN_TIMEOUT,
                    logs=cluster.logs(),
                )
                crash.wait_for(
                    lambda: srv.writing == 0 and _answers_on_s3(s3, prefix) == len(srv.answered),
                    "the workers to store every answer they received in the bucket",
                    proc,
                )
                victim = cluster.alive()[0]
                crash.kill9(victim)  # mid-chunk: its requests are held at the server
                time.sleep(3)  # the scheduler moves its chunk to another worker, which asks the server again
                crash.kill9(proc)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
            for w in cluster.alive():  # the chunks they still run for the dead flow die with them
                crash.kill9(w)
            answered_before, sent_before = srv.snapshot()
            srv.phase = "resume"
            assert srv.held and srv.hold_after <= len(answered_before) < len(every)
            cluster.add_workers(WORKERS)  # fresh processes, fresh folders: "other hosts"
            left_by_the_kill = set((flow_home / "tmp").iterdir())
            again = start(srv.base_url)
            _, err = again.communicate(timeout=300)
            assert again.returncode == 0, err[-3000:]
            assert "credentials" not in err, err[-3000:]  # the S3 client's notes stay out of the run's log
            _, sent = srv.snapshot()
            sent_after = sent[len(sent_before) :]
    finally:
        cluster.stop()

    made, one_run = Counter(answered_before) + Counter(sent_after), Counter(every)
    # what the server answered before the kills and was sent after them add up to the local run's calls: nothing
    # answered was paid twice, and the workers, which read the round's dedup index from the bucket, left unasked
    # every answer the local engine leaves unasked (an evolution repeating a text kept before its round began)
    assert made == one_run, f"beyond the local run's: {sum((made - one_run).values())}, missing: {one_run - made}"
    for name in ("dataset.json", "records.jsonl", "rejected.jsonl"):
        assert s3.read(f"{prefix}/{name}") == (full / name).read_bytes(), name
    m, local = json.loads(s3.read(f"{prefix}/manifest.json")), crash.manifest(full)
    assert m["status"] == "complete" and m["counts"] == local["counts"]
    # counted as the local run counts them; the planted repeats make some (about one evolution in 13 repeats)
    assert m["usage"]["calls_saved"] == local["usage"]["calls_saved"] and local["usage"]["calls_saved"]["respond"] > 0
    assert f"{prefix}/checkpoints/round-2/kept.index" in s3.names(f"{prefix}/checkpoints/round-2")  # once a round
    assert m["out"] == s3.url(prefix)
    assert set((flow_home / "tmp").iterdir()) == left_by_the_kill  # the rerun removed its local copy of the run
    assert not any("calls.sqlite" in n for n in s3.names(prefix))
    assert not (ROOT / "s3:").exists()
