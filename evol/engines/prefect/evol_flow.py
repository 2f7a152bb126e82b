"""The evol pipeline as Prefect flows: one-off runs, scheduled runs, chunks on threads or on Dask.

``evol`` (parent flow) holds what must live as long as the run: the run-folder lock, the backend (the
embedded llama.cpp server is started once, here) and the task runner's cluster. ``evol-pipeline`` (its
subflow) does the work round by round: ``evolve-round-N-chunk-B`` tasks (a few hundred pool entries
each, with async concurrency inside, so the tens of ms a task run costs stay invisible), each chunk
settled in the flow (dedup and pool update, in seed order, into the round's spool files) as soon as the
chunks before it are, then ``write-outputs-round-N`` (``write-outputs-final`` after the last). Finished
chunks are checkpointed in the run folder, so a restarted run with the same folder skips them without a
single call.

The results are those of ``evol.engines.local.execute`` byte for byte: the same round loop (``evol.evolve.rounds.run_rounds``),
Evolver and ``write_outputs`` do the work; ``Stage`` is only the executor that runs a round's items as tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.context import SyncClientContext
from prefect.utilities.annotations import quote
from pydantic import Field, field_validator
from pydantic.json_schema import SkipJsonSchema

from evol.config import RunConfig
from evol.dedup.index import Deduper
from evol.engines.prefect import chunks
from evol.engines.prefect.artifact import run_summary
from evol.engines.prefect.chunks import ChunkJob, ChunkResult, Endpoint
from evol.engines.prefect.runners import THREADS, on_threads, task_runner
from evol.engines.prefect.server import TemporaryServer, prefect_api
from evol.errors import BackendError, EvolError
from evol.evolve.progress import current
from evol.evolve.rounds import RunState, run_rounds
from evol.evolve.run import RunContext, check_inputs, default_out, fewer_gc_pauses, inputs_checked, write_outputs
from evol.evolve.settling import make_deduper
from evol.llm.usage import Tally
from evol.models import Outcome
from evol.prompts import Profile
from evol.rundir.folder import RunDir
from evol.rundir.manifest import Chunks, Manifest
from evol.rundir.store import is_remote
from evol.seeds import SeedSet

T = TypeVar("T")

#: pool entries per chunk task: big enough that task overhead is noise, small enough that a crash loses little
CHUNK_SIZE = 256


class FlowConfig(RunConfig):
    """The run's config as a flow parameter: RunConfig's fields and checks, without the API key.

    Flow parameters are stored by the Prefect server and shown in its UI; the key stays in the
    environment of the processes that call the model (EVOL_API_KEY or OPENAI_API_KEY).
    """

    api_key: SkipJsonSchema[None] = Field(None, exclude=True, repr=False)

    @field_validator("api_key", mode="before")
    @classmethod
    def _no_key(cls, v: Any) -> None:
        if v is not None:
            raise ValueError("never pass the API key as a flow parameter; set EVOL_API_KEY where the flow runs")
        return None

    @field_validator("batch")
    @classmethod
    def _no_batch(cls, v: bool) -> bool:
        if v:  # chunk tasks would each send their own small Batch API file, two at a time
            raise ValueError("the Batch API runs on the local engine: python -m evol run --batch --engine local")
        return v


# --- tasks


def as_is(value: T) -> T:
    """``value`` as a task parameter that Prefect hands over without walking it for futures to resolve (``quote``);
    Prefect unwraps it before the task runs, which its Task type cannot say."""
    return cast(T, quote(value))


def _worth_retrying(task, task_run, state) -> bool:
    """Retry infrastructure hiccups (a locked SQLite file, a lost worker), not evol's own verdicts."""
    exc = state.data if isinstance(state.data, BaseException) else None
    if isinstance(exc, BackendError):
        return exc.transient
    return not isinstance(exc, EvolError)


_chunk_options: dict[str, Any] = dict(
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=_worth_retrying,
    cache_policy=NO_CACHE,
    persist_result=False,
)


def _run_and_checkpoint(job: ChunkJob) -> ChunkResult:
    # a sync task that waits for its chunk on the process's lane: Prefect's async tasks on a thread pool cost
    # ~30 ms each in engine set-up (a new loop and API client per task), its sync ones ~3 ms (measured here)
    t0 = time.perf_counter()
    result = chunks.run_on_lane(job)
    result.seconds = time.perf_counter() - t0
    chunks.write_checkpoint(job, result)
    return result


@task(name="evolve-chunk", task_run_name="evolve-round-{round_no}-chunk-{chunk_no}", **_chunk_options)
def evolve_chunk(job: ChunkJob, round_no: int, chunk_no: int) -> ChunkResult:
    """Evolve, judge and answer one chunk of pool entries (each entry streams through the three stages)."""
    return _run_and_checkpoint(job)


@task(name="answer-seeds-chunk", task_run_name="answer-seeds-chunk-{chunk_no}", **_chunk_options)
def answer_seeds_chunk(job: ChunkJob, chunk_no: int) -> ChunkResult:
    """Answer one chunk of seeds for the dataset (include_seeds)."""
    return _run_and_checkpoint(job)


@task(name="write-outputs", task_run_name="write-outputs-{when}", cache_policy=NO_CACHE, persist_result=False)
def write(ctx: RunContext, status: str, reason: str, when: str) -> Manifest:
    """dataset.json, records, rejections and manifest, atomically: ``evol.evolve.run.write_outputs``, unchanged."""
    return write_outputs(ctx, status, reason)


@dataclass
class ChatStats:
    """What the manifest reads of a CachedChat (``evol.evolve.run.CacheBooks``), added up over every chunk."""

    identity: str
    hits: int = 0
    misses: int = 0


# --- the work: rounds of chunks


@dataclass
class Stage:
    """Runs one stage's chunks: restores what is checkpointed, submits the rest, adds up the books."""

    config: FlowConfig
    profile: Profile
    endpoint: Endpoint
    run_dir: str  # a local folder's absolute path, or a URL
    run_key: str
    chunk_size: int
    parallel: int  # chunks running at once
    processes: int  # processes they run in (each has its lane: its part of --concurrency, --rpm, --tpm)
    tally: Tally
    stats: ChatStats
    counts: Counter
    kept: Deduper | None = None  # the run's dedup index (see ChunkJob.kept)

    async def run(self, round_no: int, items: Sequence, consume: Callable[[Outcome], None]) -> None:
        """Run the round's chunks and hand their outcomes to ``consume`` in item order, a chunk as soon as it
        and every chunk before it are done: no more than the chunks finished out of order is held."""
        log = get_run_logger()
        parts = [items[i : i + self.chunk_size] for i in range(0, len(items), self.chunk_size)]
        jobs = [
            ChunkJob(
                config=self.config,
                profile=self.profile,
                endpoint=self.endpoint,
                run_dir=self.run_dir,
                run_key=self.run_key,
                round_no=round_no,
                chunk_no=b,
                items=chunk,
                concurrency=0,
            )
            for b, chunk in enumerate(parts)
        ]
        progress = current()
        progress.round_start(round_no, self.config.rounds, len(items))
        # a checkpoint is read once to see that it is whole, and again when its turn comes: not held meanwhile
        restored = {job.chunk_no for job in jobs if self._restorable(job, progress)}
        todo = [job for job in jobs if job.chunk_no not in restored]
        # --concurrency (and --rpm, --tpm) are the run's totals: shared by the processes that run chunks, and
        # within a process by its chunks, through its lane
        share = max(1, min(self.processes, len(todo)))
        per_process = max(1, math.ceil(self.config.connections / share))
        spent = {m: u.model_dump() for m, u in self.tally.by_model.items()}
        threads = on_threads()
        snapshot: list[str] = []  # the sha256 of the round's dedup index in the run folder, once written

        def kept_digest() -> str | None:
            """Chunks in other processes (Dask) read the run's dedup index as the round began from the run folder,
            once per process: written here once per round, before the first chunk that needs it is submitted."""
            if threads or self.kept is None or round_no == 0:
                return None
            if not snapshot:
                t0 = time.perf_counter()
                digest, size = chunks.write_kept(self.run_dir, round_no, self.kept)
                took = time.perf_counter() - t0
                log.info("round %d: the dedup index for the workers, %.1f MB in %.2f s", round_no, size / 1e6, took)
                snapshot.append(digest)
            return snapshot[0]

        def submit(job: ChunkJob, concurrency: int, share: int):
            job.concurrency, job.share, job.spent = concurrency, share, spent
            # a chunk looks its evolutions up in the run's dedup index, as it was when the round began, before
            # answering them: on this process's threads the index itself, in another process its snapshot
            job.kept = self.kept if threads else None
            job.kept_digest = kept_digest()
            # as is on threads: Prefect would otherwise walk every field of every item in the chunk, twice per task
            # run, looking for futures to resolve (~0.4 s of CPU per 256-item chunk, measured); Dask, which ships
            # the parameters to its workers, would turn the quote into a plain tuple
            param = as_is(job) if threads else job
            if round_no == 0:
                return answer_seeds_chunk.submit(param, job.chunk_no)
            return evolve_chunk.submit(param, round_no, job.chunk_no)

        futures = {job.chunk_no: submit(job, per_process, share) for job in todo}
        what = "seeds" if round_no == 0 else f"round {round_no}"
        log.info("%s: %d chunks, %d restored from checkpoints, %d to run", what, len(jobs), len(restored), len(todo))
        errors: list[BaseException] = []
        for job in jobs:
            b = job.chunk_no
            r = chunks.read_checkpoint(job) if b in restored else None
            if r is None:
                if b not in futures:  # its checkpoint went away since the first look: run it after all
                    futures[b] = submit(job, per_process, share)
                # wait for every chunk before raising, so each one that finished is checkpointed for the restart
                try:
                    ran: ChunkResult = await asyncio.to_thread(futures.pop(b).result)
                except (asyncio.CancelledError, KeyboardInterrupt):  # Ctrl-C: the running chunks start no new call
                    chunks.STOP.set()
                    raise
                except Exception as exc:  # a failed chunk
                    errors.append(exc)
                    if books := chunks.books_of(exc):
                        self._add(ChunkResult(outcomes=[], tally=books.tally, hits=books.hits, misses=books.misses))
                    continue
                r = ran
                if not threads:  # a chunk on this process's threads reported each item as it came; Dask's, here
                    progress.items(r.outcomes)
            self._add(r)  # the finished chunks' calls count, whatever happens to the round
            if not errors:
                for out in r.outcomes:
                    consume(out)
            # Prefect's task engine and future still point at this result, in reference cycles that wait for a full
            # collection (rarer still under fewer_gc_pauses): its outcomes, texts and all, are let go here instead
            r.outcomes = []
        if errors:
            raise min(errors, key=lambda e: 0 if isinstance(e, BackendError) and e.fatal else 1)

    @staticmethod
    def _restorable(job: ChunkJob, progress) -> bool:
        r = chunks.read_checkpoint(job)
        if r is not None:
            progress.items(r.outcomes)
        return r is not None

    def _add(self, r: ChunkResult) -> None:
        chunks.add_tally(self.tally, r.tally, restored=r.restored)
        if r.restored:
            self.stats.hits += sum(r.tally.get("calls", {}).values())
        else:
            self.stats.hits += r.hits
            self.stats.misses += r.misses
        self.counts["chunks_restored" if r.restored else "chunks_run"] += 1


@flow(name="evol-pipeline", log_prints=False, validate_parameters=True)
async def pipeline_flow(
    config: FlowConfig,
    endpoint: Endpoint,
    out: str,
    chunk_size: int = CHUNK_SIZE,
    parallel: int = THREADS,
    processes: int = 1,
) -> Manifest:
    """The rounds of one run, on whatever task runner the parent flow chose; returns the manifest."""
    profile, seedset = check_inputs(config)
    run_dir = RunDir(out)  # the parent flow holds the lock
    try:
        return await _pipeline(config, endpoint, run_dir, profile, seedset, chunk_size, parallel, processes)
    finally:
        run_dir.close()  # at a URL: this subflow's local copy of the run folder


async def _pipeline(
    config: FlowConfig,
    endpoint: Endpoint,
    run_dir: RunDir,
    profile: Profile,
    seedset: SeedSet,
    chunk_size: int,
    parallel: int,
    processes: int,
) -> Manifest:
    log = get_run_logger()
    models = endpoint.models
    started = time.time()
    tally, stats, counts = Tally(), ChatStats(endpoint.identity), Counter[str]()
    stage = Stage(
        config,
        profile,
        endpoint,
        run_dir.where if run_dir.remote is not None else str(run_dir.path.resolve()),  # where chunks reach it
        chunks.run_key(config, profile, endpoint),
        chunk_size,
        parallel,
        processes,
        tally,
        stats,
        counts,
    )
    ctx = RunContext(
        run_dir,
        config,
        profile,
        models,
        RunState.start(seedset, run_dir, config.turns, profile.line_names),
        tally,
        started,
        stats,
    )
    ctx.concurrency = lambda: chunks.concurrency_books(str(run_dir.path.resolve()))
    ctx.plan()
    ctx.announce(log)

    async def checkpoint(status: str, reason: str, when: str) -> Manifest:
        manifest = write(as_is(ctx), status, reason, when)  # as is: not a walk over the whole pool and seed set
        if when == "final":
            chunks_done = Chunks(run=counts["chunks_run"], restored=counts["chunks_restored"])
            manifest = manifest.model_copy(update={"chunks": chunks_done})
            await run_summary(manifest, ctx.state)
        return manifest

    # one Prefect API client for every chunk task: each task run would otherwise open two of its own, and each
    # builds a TLS context from certifi's bundle (40 to 110 ms of CPU apiece here), for an API on plain HTTP too;
    # the task threads inherit it with the flow's context
    with SyncClientContext.get_or_create():
        stage.kept = deduper = make_deduper(config, seedset.seeds)
        return await run_rounds(config, ctx.state, deduper, stage, checkpoint, log)


# --- the run: lock, backend, task runner


@flow(name="evol", log_prints=False, validate_parameters=True)
async def evol_flow(
    config: FlowConfig, chunk_size: int = CHUNK_SIZE, dask_address: str | None = None, dask_workers: int | None = None
) -> Manifest:
    """Evolve seed instructions into a dataset, as ``python -m evol run`` does; returns the manifest.

    ``config`` takes the same keys as a config file (``RunConfig``, without the API key). Chunks run
    on two threads by default, on the Dask cluster at ``dask_address``, or on a local cluster of
    ``dask_workers`` processes.
    """
    from evol.llm.backend import open_backend  # here, so importing the flow costs no SDK start-up

    cfg = RunConfig(**config.explicit_dict(), api_key=chunks.api_key())  # what the user left unset stays unset
    out = default_out(cfg)
    # bad input fails before any server starts (a scheduled run has no CLI to check it); the subflow reuses them
    with inputs_checked(cfg), RunDir(out):
        async with open_backend(cfg) as (chat, models, cfg):
            endpoint = Endpoint(
                base_url=chat.base_url,
                identity=chat.identity,
                evolve_model=models.evolve,
                respond_model=models.respond,
                judge_model=models.judge,
                seed_calls=chat.seed_calls,
                replicas=chat.replicas,
            )
            runner, parallel, processes = task_runner(dask_address, dask_workers)
            public = FlowConfig(**cfg.public_dict())
            run_dir = out if is_remote(out) else str(Path(out).resolve())  # as the chunks name it
            try:
                return await pipeline_flow.with_options(task_runner=runner)(
                    config=public,
                    endpoint=endpoint,
                    out=str(out),
                    chunk_size=chunk_size,
                    parallel=parallel,
                    processes=processes,
                )
            finally:  # the subflow's task runner has exited: none of its chunks is still running
                chunks.close_lanes(run_dir)  # this process's; a Dask worker closes its own when it exits


# --- entry points for the CLI


@contextlib.contextmanager
def prefect_session(config: RunConfig, server: TemporaryServer | None = None) -> Iterator[None]:
    """A Prefect API to report to (``server``, if the caller launched it), and the API key where this process's
    flows and threads find it."""
    given = chunks.GIVEN_KEY.set(config.api_key)  # for the chunk tasks on this process's threads; never a parameter
    chunks.STOP.clear()  # a run after an interrupted one, in the same process, runs
    try:
        with prefect_api(server), fewer_gc_pauses():
            yield
    finally:
        chunks.GIVEN_KEY.reset(given)


def run_with_prefect(
    config: RunConfig,
    *,
    chunk_size: int = CHUNK_SIZE,
    dask_address: str | None = None,
    dask_workers: int | None = None,
    server: TemporaryServer | None = None,
) -> Manifest:
    """``python -m evol run`` through Prefect: the same run folder and dataset as ``evol.engines.local.execute``."""
    with prefect_session(config, server):
        return asyncio.run(
            # a dict, not a FlowConfig: Prefect stores the parameters before validating them, and the dict holds only
            # what the user set; Flow's type takes the model only
            evol_flow(  # type: ignore[call-overload]
                config=config.explicit_dict(),
                chunk_size=chunk_size,
                dask_address=dask_address,
                dask_workers=dask_workers,
            )
        )
