"""The local engine: a whole run in this process, without any orchestrator; seeds in, run folder out."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from evol.config import RunConfig
from evol.evolve.concurrency import bounded_map
from evol.evolve.evolver import Evolver
from evol.evolve.progress import LiveTally, current
from evol.evolve.rounds import RunState, run_rounds
from evol.evolve.run import RunContext, check_inputs, default_out, fewer_gc_pauses, read_seeds, write_outputs
from evol.evolve.settling import make_deduper
from evol.llm.batch.chat import open_batching
from evol.llm.cache import CachedChat, open_cache
from evol.llm.client import ChatModel
from evol.models import Models, Outcome
from evol.prompts import Profile, load_profile
from evol.rundir.folder import RunDir
from evol.rundir.manifest import Manifest
from evol.seeds import SeedSet

log = logging.getLogger("evol")


async def execute(config: RunConfig) -> Manifest:
    """Everything ``python -m evol run`` does: check inputs, open the backend, lock the run folder, run."""
    from evol.llm.backend import (
        open_backend,  # here, so the core imports without the SDK's start-up cost
    )

    profile, seedset = check_inputs(config)  # bad input fails before any server starts or any money is spent
    run_dir = RunDir(default_out(config))
    with run_dir, fewer_gc_pauses():
        async with open_backend(config) as (chat, models, config):
            return await run_pipeline(config, chat, models, run_dir, profile, seedset)


async def run_pipeline(
    config: RunConfig,
    chat: ChatModel,
    models: Models,
    run_dir: RunDir,
    profile: Profile | None = None,
    seedset: SeedSet | None = None,
) -> Manifest:
    """Run every round in this process and write the run directory; returns the manifest."""
    profile = profile or load_profile(config.profile, config.prompts_dir, config.operation_weights)
    seedset = seedset or read_seeds(config)
    started = time.time()
    cache = open_cache(run_dir)
    try:  # --batch: calls go out as Batch API files; the pipeline does not know the difference
        batching = await open_batching(chat, config, cache) if config.batch else None
    except BaseException:
        cache.close()
        raise
    cached_chat = CachedChat(batching or chat, cache)
    ctx = RunContext(
        run_dir,
        config,
        profile,
        models,
        RunState.start(seedset, run_dir, config.turns, profile.line_names),
        LiveTally(),
        started,
        cached_chat,
    )
    gate = getattr(chat, "gate", None)  # --concurrency auto: the client's limit, shown live and in the manifest
    if gate is not None:
        ctx.concurrency = gate.books
        current().watch(gate)
    ctx.plan()  # before the first call, and before this run's manifest replaces the folder's last one
    ctx.announce(log)

    async def write(status: str, reason: str, when: str) -> Manifest:
        return write_outputs(ctx, status, reason)

    try:
        deduper = make_deduper(config, seedset.seeds)
        executor = LocalExecutor(Evolver(config, profile, cached_chat, models, ctx.tally, kept=deduper), config.rounds)
        return await run_rounds(config, ctx.state, deduper, executor, write)
    finally:
        if batching is not None:
            await batching.aclose()  # submitted batches run on; the same command collects them
        cache.close()


class LocalExecutor:
    """Every item of a round in this process, at most ``evolver.workers`` at a time."""

    def __init__(self, evolver: Evolver, rounds: int):
        self.evolver, self.rounds = evolver, rounds

    async def run(self, round_no: int, items: Sequence, consume: Callable[[Outcome], None]) -> None:
        progress = current()
        progress.round_start(round_no, self.rounds, len(items))

        def done(out: Outcome) -> None:
            progress.item(out)
            consume(out)

        if round_no == 0:
            await bounded_map(self.evolver.answer_seed, items, self.evolver.workers, done, collect=False)
        else:
            await self.evolver.run_round(items, round_no, done, collect=False)
