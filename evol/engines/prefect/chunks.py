"""One chunk of pool entries through one round, with no Prefect in sight: what a chunk task runs anywhere.

A chunk runs on its process's ``Lane``: one client (the key from the process's own environment, never from a
parameter) and one connection to the run directory's ``calls.sqlite`` for every chunk the process runs, so a
chunk runs the same in a thread of the flow's process or in a Dask worker on another machine that sees the
run directory.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import hashlib
import io
import json
import logging
import shutil
import tempfile
import threading
from collections.abc import Coroutine, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from pydantic import BaseModel, ConfigDict, SecretStr

from evol.config import RunConfig, api_key_from_env
from evol.dedup.index import Deduper
from evol.evolve.concurrency import bounded_map
from evol.evolve.evolver import Evolver
from evol.evolve.progress import LiveTally, current
from evol.llm.cache import CachedChat, CallCache, ShardedCache
from evol.llm.client import ChatModel, OpenAIChat
from evol.llm.usage import Tally
from evol.models import Models, Node, Outcome, Record, Rejection, Seed, Usage
from evol.prompts import Profile
from evol.rundir.folder import CACHE
from evol.rundir.shards import Shards
from evol.rundir.store import Remote, is_remote

T = TypeVar("T")
log = logging.getLogger("evol")

#: an API key handed to run_with_prefect in code rather than through the environment: set for the flow's run
#: (``prefect_session``), it reaches the chunk tasks on threads with the context Prefect copies into them;
#: other processes (Dask workers) read EVOL_API_KEY / OPENAI_API_KEY as usual
GIVEN_KEY: ContextVar[SecretStr | None] = ContextVar("evol_api_key", default=None)
#: set when the flow is interrupted: the chunks running on this process's threads start no new call, so the
#: task runner's exit (which waits for them) comes once the calls in flight are answered, not the whole chunk
STOP = threading.Event()


def api_key() -> SecretStr | None:
    return GIVEN_KEY.get() or api_key_from_env()


class Endpoint(BaseModel):
    """How chunks reach the model, as resolved once by the flow: everything but the key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str
    identity: str  # the call cache's notion of "same endpoint" (the embedded server's differs from its URL)
    evolve_model: str
    respond_model: str
    judge_model: str
    seed_calls: bool = False  # each call sends its own sampling seed (the embedded model)
    replicas: tuple[str, ...] = ()  # more servers of the same model (the embedded model's, one per core)

    @property
    def models(self) -> Models:
        return Models(evolve=self.evolve_model, respond=self.respond_model, judge=self.judge_model)


@dataclass
class ChunkJob:
    """Everything a chunk task needs; picklable, so Dask can ship it, and free of secrets."""

    config: RunConfig  # with api_key None
    profile: Profile
    endpoint: Endpoint
    run_dir: str
    run_key: str  # see run_key(): changes whenever anything that shapes an answer changes
    round_no: int  # 0 answers seeds (include_seeds), 1.. evolves the pool
    chunk_no: int
    items: Sequence  # Seeds for round 0, Nodes after
    concurrency: int  # connections the process running this chunk may hold open, for all its chunks
    share: int = 1  # processes running chunks at once: each gets 1/share of --rpm and --tpm
    spent: dict = field(default_factory=dict)  # tokens by model before this chunk, for --budget-usd
    kept: Deduper | None = None  # the run's dedup index, on threads only (Evolver's kept); never pickled
    # in another process (Dask): the sha256 of the round's snapshot of that index in the run folder (write_kept),
    # read once per process and round (kept_index); None: no index, every evolution that passes is answered
    kept_digest: str | None = None

    @property
    def checkpoint(self) -> Path:
        return checkpoint_path(Path(self.run_dir), self.round_no, self.chunk_no)

    @property
    def fingerprint(self) -> str:
        return chunk_fingerprint(self.run_key, self.round_no, self.items)


@dataclass
class ChunkResult:
    outcomes: list[Outcome]
    tally: dict  # Tally.as_dict() of this chunk's calls
    hits: int = 0
    misses: int = 0
    restored: bool = False  # read back from a checkpoint: no call made, not even to the cache
    seconds: float = 0.0


class Lane:
    """This process's event loop on a thread of its own, with one client and one call cache for the run.

    Every chunk task of the process runs its items here, so the chunks running at once share the process's
    part of --concurrency, --rpm and --tpm through one connection pool: while one chunk's last items are
    in flight, the next chunk's first ones take the connections it frees, and no chunk's tail leaves them
    idle. It also spares each chunk a new event loop, client and database connection.
    """

    def __init__(self, job: ChunkJob):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="evol-lane", daemon=True)
        self.thread.start()
        self._tmp: str | None = None
        if is_remote(job.run_dir):  # a run folder at a URL: shards there, lookups in a SQLite file of our own
            self._tmp = tempfile.mkdtemp(prefix="evol-lane-")
            self.cache: CallCache = ShardedCache(Path(self._tmp) / CACHE, Shards(remote_for(job.run_dir)), shared=True)
        else:
            self.cache = CallCache(Path(job.run_dir) / CACHE)
        # the key is read here, in the task's thread, which has the flow's context; the lane's thread has none
        self.chat = self.call(self._open(job, api_key()))
        if self.chat.gate is not None:  # --concurrency auto: its limit in the live progress (on threads)
            current().watch(self.chat.gate)

    @staticmethod
    async def _open(
        job: ChunkJob, secret: SecretStr | None
    ) -> OpenAIChat:  # on the lane's loop: its pool is the loop's
        cfg = job.config
        return OpenAIChat(
            job.endpoint.base_url,
            secret.get_secret_value() if secret else None,
            identity=job.endpoint.identity,
            timeout=cfg.timeout,
            max_retries=cfg.max_retries,
            concurrency=job.concurrency,
            adaptive=cfg.adaptive,
            seed_calls=job.endpoint.seed_calls,
            replicas=job.endpoint.replicas,
            **_rate_limits(cfg, job.share),
        )

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the lane and wait for it from the calling thread."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def close(self) -> None:
        with contextlib.suppress(Exception):  # a client that cannot close cleanly has nothing left to lose
            self.call(self.chat.aclose())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.cache.close()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)


_lanes: dict[tuple, Lane] = {}
_lanes_lock = threading.Lock()


def lane_for(job: ChunkJob) -> Lane:
    """The process's lane for this run (one per run folder, endpoint and share of the limits)."""
    key = (job.run_dir, job.run_key, job.endpoint, job.concurrency, job.share)
    with _lanes_lock:
        lane = _lanes.get(key)
        if lane is None:
            lane = _lanes[key] = Lane(job)
        return lane


def close_lanes(run_dir: str | None = None) -> None:
    """Close this process's lanes for ``run_dir`` (all of them if None), once no chunk of that run is running:
    after the flow's task runner has exited, or at the process's exit."""
    with _lanes_lock:
        keys = [k for k in _lanes if run_dir is None or k[0] == run_dir]
        lanes = [_lanes.pop(k) for k in keys]
    for lane in lanes:
        lane.close()


atexit.register(close_lanes)


def concurrency_books(run_dir: str) -> dict | None:
    """``--concurrency auto``'s books of this process's lanes for ``run_dir`` (their limits summed, the trace of
    the busiest); None with a fixed concurrency, or when the chunks ran in other processes (Dask)."""
    with _lanes_lock:
        gates = [lane.chat.gate for key, lane in _lanes.items() if key[0] == run_dir and lane.chat.gate is not None]
    if not gates:
        return None
    books = [g.books() for g in gates]
    busiest = max(books, key=lambda b: b["answers"])
    summed = {k: sum(b[k] for b in books) for k in ("maximum", "final", "answers", "congested")}
    return {**busiest, **summed, "peak": max(b["peak"] for b in books)}


def run_on_lane(job: ChunkJob) -> ChunkResult:
    """The chunk, on the process's lane; what a chunk task runs."""
    lane = lane_for(job)
    if job.kept is None and job.kept_digest is not None:
        job.kept = kept_index(job.run_dir, job.round_no, job.kept_digest)
    return lane.call(run_chunk(job, lane.chat, lane.cache))


async def run_chunk(job: ChunkJob, chat: ChatModel, cache: CallCache) -> ChunkResult:
    """Evolve (or answer) the chunk's items with bounded concurrency; results in item order."""
    cached = CachedChat(chat, cache)  # its own hit and miss counts: the chunk's books
    tally = LiveTally()
    # the budget check reads the Evolver's tally: start it at the run's spend so far, so the budget is the
    # run's, not the chunk's (chunks running side by side see each other's spend only afterwards)
    tally.by_model.update({m: Usage(**u) if isinstance(u, dict) else u for m, u in job.spent.items()})
    evolver = Evolver(job.config, job.profile, cached, job.endpoint.models, tally, stop=STOP, kept=job.kept)

    def books() -> dict:
        data = tally.as_dict()
        data["tokens_by_model"] = _minus(data["tokens_by_model"], job.spent)
        return data

    try:
        if job.round_no == 0:
            outcomes = await bounded_map(evolver.answer_seed, job.items, evolver.workers, current().item)
        else:
            outcomes = await evolver.run_round(job.items, job.round_no, current().item)
    except Exception as exc:
        # a stopped chunk still paid for its answers: the manifest's usage and cost must count them
        attach_books(exc, ChunkBooks(books(), cached.hits, cached.misses))
        raise
    return ChunkResult(outcomes=outcomes, tally=books(), hits=cached.hits, misses=cached.misses)


@dataclass(frozen=True)
class ChunkBooks:
    """What a chunk that failed had spent by then: its tally and its call-cache counts."""

    tally: dict
    hits: int
    misses: int


_BOOKS = "evol_chunk_books"


def attach_books(exc: BaseException, books: ChunkBooks) -> None:
    """Put a failed chunk's books on its exception: the one thing that reaches the flow from a task that raised,
    on a thread or from a Dask worker (an exception's attributes are pickled with it). The exception itself is
    kept as it is, because Prefect's retry condition and the stage's choice of which error to raise read its type."""
    exc.__dict__[_BOOKS] = books


def books_of(exc: BaseException) -> ChunkBooks | None:
    return exc.__dict__.get(_BOOKS)


def _rate_limits(cfg: RunConfig, share: int) -> dict:
    """This chunk's part of the run's request and token rates (for clients that take them)."""
    import inspect

    accepted = inspect.signature(OpenAIChat.__init__).parameters
    out: dict = {}
    for name in ("rpm", "tpm"):
        value = getattr(cfg, name, None)
        if name in accepted and value is not None:
            out[name] = value / max(1, share)
    if "rate_window" in accepted and getattr(cfg, "rate_window", None) is not None:
        out["rate_window"] = cfg.rate_window
    return out


def _minus(by_model: dict, spent: dict) -> dict:
    out = {}
    for model, usage in by_model.items():
        before = spent.get(model)
        before = before.model_dump() if isinstance(before, Usage) else (before or {})
        delta = {k: v - before.get(k, 0) for k, v in usage.items()}
        if any(delta.values()):
            out[model] = delta
    return out


# --- checkpoints: one JSONL file per finished chunk, a header line then one outcome per line

CHECKPOINTS = "checkpoints"
FORMAT = 1


def checkpoint_path(run_dir: Path, round_no: int, chunk_no: int) -> Path:
    return run_dir / checkpoint_name(round_no, chunk_no)


def checkpoint_name(round_no: int, chunk_no: int) -> str:
    """A chunk's checkpoint, relative to the run folder."""
    folder = "seeds" if round_no == 0 else f"round-{round_no}"
    return f"{CHECKPOINTS}/{folder}/chunk-{chunk_no:04d}.jsonl"


_remotes: dict[str, Remote] = {}
_remotes_lock = threading.Lock()  # not the lanes' lock: a lane opens its remote while that one is held


def remote_for(url: str) -> Remote:
    """This process's filesystem for a run folder at ``url`` (one for every chunk it runs of that run)."""
    with _remotes_lock:
        if url not in _remotes:
            _remotes[url] = Remote.open(url)
        return _remotes[url]


def run_key(config: RunConfig, profile: Profile, endpoint: Endpoint) -> str:
    """What every answer of a run depends on besides the chunk's own items."""
    data = {
        "config": {k: v for k, v in config.public_dict().items() if k != "out"},
        "endpoint": [endpoint.identity, endpoint.evolve_model, endpoint.respond_model, endpoint.judge_model],
        "prompts": profile.template_hashes(),
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def chunk_fingerprint(key: str, round_no: int, items: Sequence[Seed | Node]) -> str:
    """A checkpoint is reused only for the very same items under the very same run key."""
    h = hashlib.sha256(f"{FORMAT}:{key}:{round_no}".encode())
    for item in items:
        h.update(b"\0")
        h.update(item.model_dump_json().encode())
    return h.hexdigest()


def write_checkpoint(job: ChunkJob, result: ChunkResult) -> None:
    from evol.rundir.files import atomic_write

    def lines():
        head = {
            "evol_checkpoint": FORMAT,
            "fingerprint": job.fingerprint,
            "round": job.round_no,
            "chunk": job.chunk_no,
            "items": len(result.outcomes),
            "tally": result.tally,
        }
        yield json.dumps(head) + "\n"
        for out in result.outcomes:
            kind = "record" if isinstance(out, Record) else "rejection"
            yield json.dumps({kind: out.model_dump(mode="json")}, ensure_ascii=False) + "\n"

    if is_remote(job.run_dir):  # one object, whole or absent
        remote_for(job.run_dir).write(checkpoint_name(job.round_no, job.chunk_no), "".join(lines()).encode("utf-8"))
    else:
        atomic_write(job.checkpoint, lines())


def read_checkpoint(job: ChunkJob) -> ChunkResult | None:
    """The chunk's outcomes if a checkpoint of exactly this chunk exists and is worth keeping, else None.

    A chunk with failed items is run again, as the plain CLI does on a re-run: its answered calls come
    from the call cache, and only the failed ones go to the endpoint.
    """
    try:
        with _open_checkpoint(job) as f:
            head = json.loads(f.readline())
            if head.get("evol_checkpoint") != FORMAT or head.get("fingerprint") != job.fingerprint:
                return None
            outcomes: list[Outcome] = []
            for line in f:
                row = json.loads(line)
                outcomes.append(
                    Record.model_validate(row["record"])
                    if "record" in row
                    else Rejection.model_validate(row["rejection"])
                )
    except (OSError, ValueError, KeyError):  # missing, or not ours: run the chunk (the cache still answers)
        return None
    if len(outcomes) != len(job.items) or any(isinstance(o, Rejection) and o.kind == "failed" for o in outcomes):
        return None
    return ChunkResult(outcomes=outcomes, tally=head.get("tally") or {}, restored=True)


def _open_checkpoint(job: ChunkJob) -> IO[str]:
    if not is_remote(job.run_dir):
        return open(job.checkpoint, encoding="utf-8")
    data = remote_for(job.run_dir).read(checkpoint_name(job.round_no, job.chunk_no))  # FileNotFoundError if none
    return io.StringIO(data.decode("utf-8"))


# --- the dedup index for chunks in other processes: one snapshot per round, read once per process


def kept_name(round_no: int) -> str:
    """The snapshot of the run's dedup index as round ``round_no`` began, relative to the run folder."""
    return f"{CHECKPOINTS}/round-{round_no}/kept.index"


def write_kept(run_dir: str, round_no: int, index: Deduper) -> tuple[str, int]:
    """The texts ``index`` held when round ``round_no`` began, into the run folder for the chunks that run in other
    processes (``Deduper.snapshot``: the same bytes for the same texts, so a resumed flow rewrites what a chunk of
    the killed one may still read); returns its sha256 and size."""
    from evol.rundir.files import atomic_write_bytes

    data = index.snapshot()
    if is_remote(run_dir):  # one object, whole or absent
        remote_for(run_dir).write(kept_name(round_no), data)
    else:
        atomic_write_bytes(Path(run_dir) / kept_name(round_no), data)
    return hashlib.sha256(data).hexdigest(), len(data)


#: the indexes this process read (kept_index), newest last: one per run it works for, its latest round's
_kept: dict[str, tuple[str, Deduper | None]] = {}
_kept_lock = threading.Lock()
_KEPT_RUNS = 2  # runs whose index a process holds at once: a worker serving several runs reads again, no more


def kept_index(run_dir: str, round_no: int, digest: str) -> Deduper | None:
    """This process's copy of the run's dedup index as round ``round_no`` began (``write_kept``), read once per run
    and round however many chunks the process runs; None, with a warning, if it is missing or is not the one the
    flow wrote: the chunk then answers what the flow's settling would reject, as before there was one."""
    with _kept_lock:  # chunks starting side by side wait for the one read instead of reading it each
        held = _kept.pop(run_dir, None)
        if held is None or held[0] != digest:
            held = None  # the last round's index let go before this one is read: never both in memory
            held = (digest, _read_kept(run_dir, round_no, digest))
        _kept[run_dir] = held
        while len(_kept) > _KEPT_RUNS:
            del _kept[next(iter(_kept))]
        return held[1]


def _read_kept(run_dir: str, round_no: int, digest: str) -> Deduper | None:
    name = kept_name(round_no)
    try:
        data = remote_for(run_dir).read(name) if is_remote(run_dir) else (Path(run_dir) / name).read_bytes()
        if hashlib.sha256(data).hexdigest() != digest:
            raise ValueError("it is not the one the flow wrote")
        return Deduper.from_snapshot(data)
    except (OSError, ValueError, KeyError) as exc:
        log.warning(
            "Round %d's dedup index in %s cannot be read (%s): its chunks here answer every evolution.",
            round_no,
            run_dir,
            exc,
        )
        return None


# --- tallies of chunks, added up in the flow


def add_tally(into: Tally, data: dict, *, restored: bool) -> None:
    """Add one chunk's ``Tally.as_dict()``; a restored chunk's calls count as answered from cache."""
    calls = data.get("calls", {})
    for stage, n in calls.items():
        into.calls[stage] += n
    for stage, n in (calls if restored else data.get("calls_from_cache", {})).items():
        into.cached[stage] += n
    for stage, n in data.get("calls_failed", {}).items():
        into.errors[stage] += n
    for stage, n in data.get("calls_saved", {}).items():
        into.saved[stage] += n
    for stage, usage in data.get("tokens_by_stage", {}).items():
        into.tokens[stage] = into.tokens[stage] + Usage(**usage)
    for model, usage in data.get("tokens_by_model", {}).items():
        into.by_model[model] = into.by_model[model] + Usage(**usage)
    for stage, models in data.get("tokens_by_stage_model", {}).items():
        for model, usage in models.items():
            into.by_stage_model[stage, model] = into.by_stage_model[stage, model] + Usage(**usage)
