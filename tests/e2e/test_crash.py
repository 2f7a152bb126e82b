"""kill -9 mid-run, then the same command: no call the server finished answering is sent again (issue #6).

Each run is a real ``python -m evol run --engine local`` subprocess against the scripted server on 127.0.0.1.
The server keeps its own ledger: a request counts as *answered* only once its 200 response was completely
written (the handler sends the response itself, then records it). Answers depend only on the request, so an
interrupted run and an uninterrupted one meet the same answers and must write the same bytes.

Nothing here can stall for good: every reply waits a few tens of milliseconds (so a run is slow enough to be
killed part-way), held replies give up after ``HOLD_MAX`` seconds, every wait polls against a deadline, and the
child process is killed in a ``finally``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from aiohttp import web

from evol.testing.server import Reply, ScriptedServer, last_user

from ..conftest import ROOT, SEEDS

pytestmark = pytest.mark.slow  # runs killed with SIGKILL and run again (15-40 s each)

LIMIT, ROUNDS, CONCURRENCY = 100, 2, 8
DELAY = 0.03  # every reply waits this long: ~250 calls/s at most, so a run of ~500 calls lasts seconds
HOLD_MAX = 60.0  # a held reply gives up after this long, whatever happens to the test
RUN_TIMEOUT = 180.0  # any one subprocess
WAIT_TIMEOUT = 60.0  # any one poll
ARGS = (
    "run",
    "--engine",
    "local",
    "--seeds",
    str(SEEDS),
    "--limit",
    str(LIMIT),
    "--rounds",
    str(ROUNDS),
    "--seed",
    "5",
    "--concurrency",
    str(CONCURRENCY),
)
DUP = "Compose a detailed guide to growing tomatoes on a small city balcony, for complete beginners."


def stateless(req: dict) -> Reply:
    """Answers that depend only on the request; some are rejected on purpose (HTTP 400, duplicates, refusals)."""
    prompt = last_user(req)
    h = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:8], "big")
    if "First instruction:" in prompt:
        return Reply(content="Equal" if h % 7 == 0 else "Not Equal", delay=DELAY)
    if h % 19 == 0:
        return Reply(status=400, content="this request is not allowed", delay=DELAY)  # never cached, re-sent
    tag = f"{h:016x}"[:12]  # in every reply, so no two requests of a run are the same
    if h % 13 == 0:
        return Reply(content=f"{DUP} Ref {tag[:3]}.", delay=DELAY)  # several seeds: near duplicates
    if h % 17 == 0:
        return Reply(content=f"Sorry, I cannot help with {tag}.", delay=DELAY)
    return Reply(content=f"Reply {tag}: " + " ".join(f"w{tag}{i}" for i in range(30)), delay=DELAY)


def body_key(body: dict) -> str:
    return json.dumps(body, sort_keys=True)


class LedgerServer(ScriptedServer):
    """The scripted server, plus a ledger of the requests whose 200 response was completely written.

    With ``hold_after``, once that many requests were answered every later response is held back (not sent)
    until the test moves ``phase`` on from "hold", or ``HOLD_MAX`` passes; a held request was never answered.
    """

    def __init__(self, script, hold_after: int | None = None):
        super().__init__(script)
        self.hold_after = hold_after
        self.phase = "run"  # "run" -> "hold" (at hold_after) -> "resume" (set by the test after the kill)
        self.answered: list[str] = []
        self.held: list[str] = []
        self.writing = 0  # handlers between starting to send a response and recording it

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        response = await super()._chat(request)  # records the arrival, runs the script, waits its delay
        key = body_key(await request.json())
        if self.phase == "hold" or (
            self.phase == "run" and self.hold_after is not None and len(self.answered) >= self.hold_after
        ):
            self.phase = "hold"
            with self._lock:
                self.held.append(key)
            deadline = time.monotonic() + HOLD_MAX
            while self.phase == "hold" and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            return web.Response(status=503)  # to a client that was killed meanwhile
        self.writing += 1
        try:
            await response.prepare(request)
            await response.write_eof()  # the whole body is handed to the socket; aiohttp won't send it twice
        finally:
            self.writing -= 1
        if response.status == 200:
            with self._lock:
                self.answered.append(key)
        return response

    def snapshot(self) -> tuple[list[str], list[str]]:
        with self._lock:
            return list(self.answered), [body_key(r) for r in self.requests]


def start(
    out: Path, url: str, python_args: tuple[str, ...] = ("-m", "evol"), env: dict | None = None
) -> subprocess.Popen:
    full_env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "EVOL_API_KEY")}
    full_env.update(env or {})
    return subprocess.Popen(
        [sys.executable, *python_args, *ARGS, "--base-url", url, "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=full_env,
    )


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=RUN_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    return proc.returncode, out, err


def run(out: Path, url: str) -> str:
    code, _, err = finish(start(out, url))
    assert code == 0, err
    return err


def wait_for(
    condition, what: str, proc: subprocess.Popen | None = None, timeout: float = WAIT_TIMEOUT, logs=()
) -> None:
    """Poll ``condition`` until ``timeout``; a failure quotes the end of ``proc``'s stderr and of each log file."""
    deadline = time.monotonic() + timeout
    while not condition():
        ended = proc is not None and proc.poll() is not None
        if ended or time.monotonic() > deadline:
            if proc is not None and not ended:
                proc.kill()  # so that reading its stderr ends
                proc.wait(10)
            err = proc.stderr.read()[-2000:] if proc is not None and proc.stderr is not None else ""
            tails = "".join(f"\n--- {log}:\n{Path(log).read_text(errors='replace')[-1500:]}" for log in logs)
            state = (
                f"the run ended ({proc.returncode})" if ended and proc is not None else f"timed out ({timeout:.0f} s)"
            )
            raise AssertionError(f"{state} waiting for {what}: {err}{tails}")
        time.sleep(0.01)


def cached_rows(out: Path) -> int:
    path = out / "calls.sqlite"
    if not path.exists():
        return 0
    db = sqlite3.connect(path, timeout=5)
    try:
        return db.execute("SELECT count(*) FROM calls").fetchone()[0]
    except sqlite3.OperationalError:  # the table is not there yet
        return 0
    finally:
        db.close()


def kill9(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert proc.returncode == -signal.SIGKILL


def kill_once_held(srv: LedgerServer, proc: subprocess.Popen, out: Path) -> None:
    """kill -9 ``proc`` once the server holds its replies and the client has stored every answer it received."""
    try:
        wait_for(lambda: srv.phase == "hold", "the server to hold its replies", proc)
        wait_for(
            lambda: srv.writing == 0 and cached_rows(out) == len(srv.answered),
            "the client to store every answer it received",
            proc,
        )
        kill9(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The same command, never killed, into its own folder against a fresh server with the same script."""
    out = tmp_path_factory.mktemp("crash") / "full"
    with LedgerServer(stateless) as srv:
        run(out, srv.base_url)
        _, every = srv.snapshot()
    return out, every


def check_same_run(out: Path, full: Path, every: list[str]) -> dict:
    """(b) the same bytes as the uninterrupted run; (c) the manifest adds up."""
    for name in ("dataset.json", "records.jsonl", "rejected.jsonl"):
        assert (out / name).read_bytes() == (full / name).read_bytes(), name
    m, f = manifest(out), manifest(full)
    c = m["counts"]
    assert m["status"] == "complete" and c == f["counts"]
    assert c["balanced"] is True and c["attempts"] == LIMIT * ROUNDS
    assert c["kept"] + c["eliminated"] + c["duplicate"] + c["failed"] == c["attempts"]
    assert c["duplicate"] > 0 and c["failed"] > 0 and c["eliminated"] > 0  # the planted rejections happened
    assert c["dataset_rows"] == len(json.loads((out / "dataset.json").read_text()))
    assert m["usage"]["calls"] == f["usage"]["calls"] and m["usage"]["calls_failed"] == f["usage"]["calls_failed"]
    # every call of the uninterrupted run was made once by the resumed one, from the cache or the server
    assert sum(m["usage"]["calls"].values()) + sum(m["usage"]["calls_failed"].values()) == len(every)
    assert m["cache"]["hits"] + m["cache"]["misses"] == len(every)
    return m


def test_kill9_with_answers_in_flight_then_resume_sends_no_answered_call_again(tmp_path, uninterrupted):
    full, every = uninterrupted
    out = tmp_path / "crashed"
    with LedgerServer(stateless, hold_after=int(0.4 * len(every))) as srv:
        # the kill comes once 40% of the calls were answered and the client has stored every one of them,
        # with its next requests held at the server: answered calls and calls in flight are then disjoint
        kill_once_held(srv, start(out, srv.base_url), out)
        answered_before, sent_before = srv.snapshot()
        in_flight = list(srv.held)
        srv.phase = "resume"
        assert in_flight, "no request was in flight at the kill"
        assert srv.hold_after <= len(answered_before) < len(every)
        run(out, srv.base_url)
        _, sent = srv.snapshot()
        sent_after = sent[len(sent_before) :]

    before, after, one_run = Counter(answered_before), Counter(sent_after), Counter(every)
    # (a) nothing answered before the kill was sent again: what the server answered before and what it was sent
    # after add up to the requests of one uninterrupted run, as multisets (a few requests recur in a run: round 2
    # re-evolves a parent whose round-1 evolution was rejected, and may draw the same operation)
    assert before + after == one_run, f"paid twice: {sum((before + after - one_run).values())}"
    assert not {k for k in before if one_run[k] == 1} & set(after)
    # what was in flight at the kill was never answered, so it is sent again
    assert Counter(in_flight) - after == Counter()
    m = check_same_run(out, full, every)
    assert m["cache"]["hits"] == len(answered_before) and m["cache"]["misses"] == len(sent_after)
    assert not list(out.glob(".*.tmp"))


def test_kill9_at_an_arbitrary_moment_resends_only_answers_the_client_never_stored(tmp_path, uninterrupted):
    """No holding back: the kill may fall between an answer reaching the client and the client storing it.

    Such an answer was never stored, so it is paid for again; the accounting must say exactly that: the calls
    sent again are the answered ones missing from the cache after the kill, and there are few of them.
    """
    full, every = uninterrupted
    out = tmp_path / "crashed"
    with LedgerServer(stateless) as srv:
        proc = start(out, srv.base_url)
        try:
            wait_for(lambda: len(srv.answered) >= 0.4 * len(every), "40% of the calls to be answered", proc)
            kill9(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        wait_for(lambda: srv.writing == 0, "the server to finish writing")
        answered_before, sent_before = srv.snapshot()
        stored = cached_rows(out)
        run(out, srv.base_url)
        _, sent = srv.snapshot()
        sent_after = sent[len(sent_before) :]

    before, after, one_run = Counter(answered_before), Counter(sent_after), Counter(every)
    assert one_run - (before + after) == Counter()  # every call of the run was answered
    paid_twice = sum((before + after - one_run).values())
    assert paid_twice == len(answered_before) - stored  # only answers that never reached the cache
    assert paid_twice <= 2 * CONCURRENCY  # at most what the client had in hand at the kill
    m = check_same_run(out, full, every)
    assert m["cache"]["hits"] == stored
    assert not list(out.glob(".*.tmp"))


# Runs evol with its atomic writer wrapped: on the N-th write of NAME it hands over the first half of the
# chunks and SIGKILLs its own process, so the kill lands inside the writing of the outputs.
KILL_WHILE_WRITING = """
import os, signal, sys
import evol.rundir.files as rundir
name, nth = os.environ["EVOL_TEST_KILL_AT"].split(":")
seen = [0]
real = rundir.atomic_write
def atomic_write(path, chunks):
    if path.name == name:
        seen[0] += 1
        if seen[0] == int(nth):
            def half():
                items = list(chunks)
                yield from items[: max(1, len(items) // 2)]
                os.kill(os.getpid(), signal.SIGKILL)
            return real(path, half())
    return real(path, chunks)
rundir.atomic_write = atomic_write
from evol.cli.main import main
sys.argv[0] = "evol"
sys.exit(main())
"""


def kill_while_writing(out: Path, kill_at: str, every: list[str]) -> tuple[list[str], list[str]]:
    """Run into ``out``, killed inside the writing of ``kill_at``, then resume; (answered before, sent after)."""
    with LedgerServer(stateless) as srv:
        code, _, err = finish(start(out, srv.base_url, ("-c", KILL_WHILE_WRITING), {"EVOL_TEST_KILL_AT": kill_at}))
        assert code == -signal.SIGKILL, err
        answered_before, sent_before = srv.snapshot()
        assert len(sent_before) == len(every)  # every call was made before the outputs were written
        # the files are whole: the one being written is still the version the previous round wrote
        name = kill_at.split(":")[0]
        # the final write goes dataset, records, rejections, manifest: killed in the manifest, the rows are done
        rounds_in_rows = {"dataset.json": 1, "records.jsonl": 1, "manifest.json": 2}[name]
        rows = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
        assert rows and max(r["round"] for r in rows) == rounds_in_rows
        assert len(json.loads((out / "dataset.json").read_text())) >= len(rows)
        m = manifest(out)
        assert m["status"] == "running" and m["counts"]["rounds_done"] == 1
        assert [p.name.split(".")[1] for p in out.glob(".*.tmp")] == [name.split(".")[0]]  # the interrupted write
        run(out, srv.base_url)
        _, sent = srv.snapshot()
    return answered_before, sent[len(sent_before) :]


@pytest.mark.parametrize("kill_at", ["records.jsonl:2", "manifest.json:2"])
def test_kill9_while_writing_the_outputs(tmp_path, uninterrupted, kill_at):
    """The second write of a file is the final one, after round 2 (round 1 wrote the first)."""
    full, every = uninterrupted
    out = tmp_path / "crashed"
    answered_before, sent_after = kill_while_writing(out, kill_at, every)
    before, after = Counter(answered_before), Counter(sent_after)
    assert before + after == Counter(every)  # only the calls that never got a 200 (the planted 400s) again
    m = check_same_run(out, full, every)
    assert m["cache"]["hits"] == len(answered_before)
    assert not list(out.glob(".*.tmp"))  # the resumed run removed the half-written one


def test_resume_after_a_kill_while_writing_leaves_no_temporary_file(tmp_path, uninterrupted):
    out = tmp_path / "crashed"
    kill_while_writing(out, "dataset.json:2", uninterrupted[1])
    assert not list(out.glob(".*.tmp"))
