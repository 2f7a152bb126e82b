"""Issue #9, hardening: the run folder. Outputs are whole or absent (never half-written), one run writes into a
folder at a time, a killed run's lock does not block the next one, and nothing is written outside the folder."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from evol.errors import ConfigError, RunLockedError
from evol.rundir import files as rundir
from evol.rundir.files import atomic_write, write_json
from evol.rundir.folder import LOCK, RunDir
from evol.testing.server import ScriptedServer

from ..conftest import ROOT
from ..faultmodel import Model, assert_accounted, evol_run, manifest, run_inproc, topics, write_seeds

OUTPUTS = {"dataset.json", "records.jsonl", "rejected.jsonl", "manifest.json"}


# --- atomic writes ---------------------------------------------------------------------------------------------


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_a_write_that_fails_midway_leaves_the_old_file_and_no_temp_file(tmp_path):
    target = tmp_path / "manifest.json"
    write_json(target, {"status": "complete", "rows": 3})

    def chunks():
        yield '{"status": "running", "rows": '
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        atomic_write(target, chunks())
    assert json.loads(target.read_text()) == {"status": "complete", "rows": 3}
    assert leftovers(tmp_path) == []


def test_a_failed_rename_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "dataset.json"
    write_json(target, [{"instruction": "a", "output": "b"}])

    def broken_replace(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(rundir.os, "replace", broken_replace)
    with pytest.raises(PermissionError):
        write_json(target, [{"instruction": "new", "output": "new"}])
    assert json.loads(target.read_text()) == [{"instruction": "a", "output": "b"}]
    assert leftovers(tmp_path) == []


WRITER = """
import sys, time
from pathlib import Path
from evol.rundir.files import atomic_write

def chunks():
    for i in range(100_000):
        if i == 50:
            print("writing", flush=True)
        time.sleep(0.001)
        yield '{"row": %d}\\n' % i

atomic_write(Path(sys.argv[1]), chunks())
"""


def test_a_process_killed_while_writing_leaves_the_old_file_whole(tmp_path):
    target = tmp_path / "records.jsonl"
    target.write_text('{"row": "old"}\n')
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout.readline().strip() == "writing"
        time.sleep(0.1)  # well into the write
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(10)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert target.read_text() == '{"row": "old"}\n'  # the old file, whole; the new one never appeared half-done
    # the killed writer's temporary file is a hidden sibling, never mistaken for an output
    assert all(name.startswith(".records.jsonl.") for name in leftovers(tmp_path))


SPOOLED = {f"{n}.{kind}" for n in (0, 1, 2) for kind in ("records.jsonl", "rejected.jsonl", "dataset")}


def test_every_output_of_a_run_is_written_through_atomic_write(tmp_path, monkeypatch):
    written: list[str] = []
    real = rundir.AtomicFile.commit

    def spy(self):
        written.append(self.path.name)
        real(self)

    monkeypatch.setattr(rundir.AtomicFile, "commit", spy)
    with ScriptedServer(Model()) as srv:
        run_inproc(srv.base_url, topics(3), tmp_path / "o", rounds=2)
    assert set(written) - SPOOLED == OUTPUTS
    assert set(written) >= SPOOLED  # each round's files in .rounds too
    assert written.count("manifest.json") == 2  # after round 1, and at the end (the last round's)
    names = {p.name for p in (tmp_path / "o").iterdir()}
    assert names >= OUTPUTS and not leftovers(tmp_path / "o")
    assert names - OUTPUTS <= {"calls.sqlite", "calls.sqlite-wal", "calls.sqlite-shm", LOCK}


# --- one writer per run folder ----------------------------------------------------------------------------------


def start_cli(*args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "EVOL_API_KEY")}
    return subprocess.Popen(
        [sys.executable, "-m", "evol", "run", "--engine", "local", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )


def gated(model: Model, open_after: int):
    """A script that answers the first ``open_after`` calls, then holds every call until ``gate`` is set."""
    gate = threading.Event()
    count = {"n": 0}
    lock = threading.Lock()

    async def script(request):
        with lock:
            count["n"] += 1
            n = count["n"]
        while n > open_after and not gate.is_set():
            await asyncio.sleep(0.02)
        return model(request)

    return script, gate


def wait_for(cond, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


@pytest.mark.slow
def test_a_second_run_into_the_same_folder_is_refused_while_the_first_runs(tmp_path):
    seeds = write_seeds(tmp_path / "seeds.jsonl", topics(3))
    script, gate = gated(Model(), open_after=0)
    with ScriptedServer(script) as srv:
        args = ("--seeds", str(seeds), "--base-url", srv.base_url, "--out", str(tmp_path / "o"), "--rounds", "1")
        first = start_cli(*args)
        try:
            wait_for(lambda: srv.chat_count() >= 1)  # the first run holds the lock and is waiting on the model
            second = evol_run(*args)
            assert second.returncode == RunLockedError.exit_code == 5
            assert "Traceback" not in second.stderr
            last = second.stderr.strip().splitlines()[-1]
            assert last.startswith("evol: error: Another evol process is writing into") and "--out" in last
            gate.set()
            _out, err = first.communicate(timeout=120)
        finally:
            gate.set()
            if first.poll() is None:
                first.kill()
                first.communicate()
    assert first.returncode == 0, err
    assert manifest(tmp_path / "o")["status"] == "complete"
    assert_accounted(tmp_path / "o", 3)


@pytest.mark.slow
def test_a_run_killed_with_sigkill_leaves_a_lock_the_next_run_takes_over_and_resumes(tmp_path):
    seeds = write_seeds(tmp_path / "seeds.jsonl", topics(4))
    model = Model()
    script, gate = gated(model, open_after=5)
    with ScriptedServer(script) as srv:
        args = (
            "--seeds",
            str(seeds),
            "--base-url",
            srv.base_url,
            "--out",
            str(tmp_path / "o"),
            "--rounds",
            "1",
            "--concurrency",
            "1",
        )
        victim = start_cli(*args)
        try:
            wait_for(lambda: srv.chat_count() >= 6)  # five answered (and cached), the sixth held
            assert (tmp_path / "o" / LOCK).read_text() == str(victim.pid)
            victim.send_signal(signal.SIGKILL)
            victim.communicate(timeout=30)
        finally:
            if victim.poll() is None:
                victim.kill()
                victim.communicate()
        assert victim.returncode == -signal.SIGKILL
        assert (tmp_path / "o" / LOCK).read_text() == str(victim.pid)  # the stale lock file is still there
        gate.set()
        again = evol_run(*args)
    assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr
    m = manifest(tmp_path / "o")
    assert m["status"] == "complete" and m["cache"]["hits"] >= 5  # what the killed run was answered is not paid again
    rows = assert_accounted(tmp_path / "o", 4)
    assert all(v[0] == "kept" for v in rows.values())


def test_the_lock_is_the_kernels_so_it_dies_with_its_holder(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from evol.rundir.folder import RunDir; RunDir(sys.argv[1]).lock(); "
            "print('locked', flush=True); time.sleep(60)",
            str(tmp_path / "o"),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError, match="Another evol process"):
            RunDir(tmp_path / "o").lock()
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        holder.stdout.close()
    with RunDir(tmp_path / "o") as taken:
        assert (taken.path / LOCK).read_text() == str(os.getpid())


# --- nothing escapes the run folder -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../escaped.json", "/tmp/escaped.json", "sub/../../escaped.json", "..", "a/../../b"])
def test_names_that_lead_out_of_the_run_folder_are_refused(tmp_path, name):
    with pytest.raises(ConfigError, match="outside the run folder"):
        RunDir(tmp_path / "o") / name
    assert (RunDir(tmp_path / "o") / "sub/records.jsonl").parent == (tmp_path / "o" / "sub").resolve()


@pytest.mark.parametrize("output", ["dataset.json", "manifest.json", "calls.sqlite", ".rounds", LOCK])
@pytest.mark.slow
def test_an_output_planted_as_a_symlink_to_outside_is_refused_and_its_target_untouched(tmp_path, output):
    victim = tmp_path / "precious.txt"
    victim.write_text("do not touch")
    out = tmp_path / "o"
    out.mkdir()
    (out / output).symlink_to(victim)
    seeds = write_seeds(tmp_path / "seeds.jsonl", topics(2))
    with ScriptedServer(Model()) as srv:
        proc = evol_run("--seeds", str(seeds), "--base-url", srv.base_url, "--out", str(out), "--rounds", "1")
        assert srv.chat_count() == 0  # refused when the folder is locked, before anything is paid for
    assert proc.returncode == ConfigError.exit_code and "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("evol: error: ") and (output in last)
    assert victim.read_text() == "do not touch"


@pytest.mark.slow
def test_an_out_path_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "o").write_text("a file")
    seeds = write_seeds(tmp_path / "seeds.jsonl", topics(1))
    proc = evol_run("--seeds", str(seeds), "--base-url", "http://127.0.0.1:9/v1", "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "exists and is not a folder" in proc.stderr.strip().splitlines()[-1]
    assert (tmp_path / "o").read_text() == "a file"
