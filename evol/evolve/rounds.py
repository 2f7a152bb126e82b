"""The rounds of a run, the same for every engine: the engines only schedule the work of each round.

``run_rounds`` answers the seeds (``include_seeds``), then plays each round: every pool entry's outcome is
offered to ``RunState.settling`` (dedup and pool update in seed order, straight into the round's spool files),
and the outputs are written after each round and at the end, whatever happened. An ``Executor`` decides
only where and how the items of a round run: in this process (``evol.engines.local.LocalExecutor``), or as Prefect tasks over
chunks of the pool (``evol.engines.prefect.evol_flow.Stage``), on threads or on a Dask cluster.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from evol.config import RunConfig
from evol.errors import BackendError, BudgetExceeded
from evol.evolve.progress import current
from evol.evolve.settling import RoundSettler
from evol.models import Node, Outcome, Record, Rejection
from evol.rundir.folder import RunDir
from evol.rundir.manifest import Manifest
from evol.rundir.spool import RoundSink, Spool, Totals
from evol.seeds import SeedSet

log = logging.getLogger("evol")


class Executor(Protocol):
    async def run(self, round_no: int, items: Sequence, consume: Callable[[Outcome], None]) -> None:
        """Run one round's items (round 0: the seeds to answer; then the pool's nodes) and hand each outcome
        to ``consume``, in any order, each once; raise after the items under way finished if one failed."""


#: writes the outputs with the run's status and reason so far; ``when`` names the moment (round-1, final)
Writer = Callable[[str, str, str], Awaitable[Manifest]]


async def run_rounds(
    config: RunConfig, state: RunState, deduper, executor: Executor, write: Writer, logger=log
) -> Manifest:
    """Every round of the run through ``executor``; the outputs written after each round and at the end
    (with why the run stopped, if it did). Returns the final manifest."""
    status, reason = "complete", ""
    try:
        if config.include_seeds:
            answered: list[Outcome] = []
            await executor.run(0, state.seedset.seeds, answered.append)
            state.apply_seeds(answered)
            del answered
        for round_no in range(1, config.rounds + 1):
            # each outcome is settled (dedup, pool update, the round's spool files) as soon as every earlier one
            # in pool order is: a round's outcomes are never all in memory at once
            with state.settling(deduper, round_no, logger) as offer:
                await executor.run(round_no, state.pool, offer)
            if round_no < config.rounds:  # after the last one, the final write below is the only one
                await write("running", "", f"round-{round_no}")
    except BaseException as exc:  # what is done is still written out, with why the run stopped
        status, reason = stop_status(exc)
        raise
    finally:
        manifest = await write(status, reason, "final")
    return manifest


@dataclass
class RunState:
    """Everything a run has decided so far: the pool, the totals, and the settled rounds in the spool."""

    seedset: SeedSet
    spool: Spool
    pool: list[Node] = field(default_factory=list)
    totals: Totals = field(default_factory=Totals)
    rounds_done: int = 0
    with_outputs: bool = False  # the pool keeps each entry's answer, for follow-up turns (--turns above 1)

    @classmethod
    def start(cls, seedset: SeedSet, run_dir: RunDir, turns: int = 1, lines: tuple[str, ...] = ("",)) -> RunState:
        """A fresh state over an emptied spool; the skipped seeds are round 0's rejections until seeds are answered.
        The pool holds each seed once per line (``Profile.line_names``), seed by seed: each its own lineage."""
        spool = Spool(run_dir)
        spool.reset()
        with_outputs = turns > 1
        pool = [Node.from_seed(s, with_outputs, line) for s in seedset.seeds for line in lines]
        state = cls(seedset=seedset, spool=spool, pool=pool, with_outputs=with_outputs)
        spool.put(0, [], seedset.skipped)
        state.totals.add(seedset.skipped)
        return state

    def apply_seeds(self, outcomes: list[Record | Rejection]) -> None:
        """Take the answered seeds (include_seeds) into round 0, beside the skipped ones."""
        # the outcomes come in the order the answers arrived: the seed rows follow the seed file, as every round's do
        records = sorted((o for o in outcomes if isinstance(o, Record)), key=lambda r: r.seed_index)
        rejected = [o for o in outcomes if not isinstance(o, Record)]
        # skipped seeds carry the index of the next loaded seed: merged by index, "load" before "respond"
        self.spool.put(0, records, sorted([*self.seedset.skipped, *rejected], key=lambda r: (r.seed_index, r.stage)))
        self.totals.add(outcomes)

    @contextlib.contextmanager
    def settling(self, deduper, round_no: int, logger=log) -> Iterator[Callable[[Record | Rejection], None]]:
        """Yield ``offer``: the round's outcomes, offered in any order, are deduplicated and applied to the pool
        in pool order (seed order), each written to the round's spool files as soon as every earlier one is.
        The round's files and totals are taken in when the block ends without error and every pool entry's
        outcome came, and thrown away otherwise."""
        started, progress = time.time(), current()
        sink = RoundSink(self.spool, round_no)
        if deduper is not None:
            deduper.begin_round()  # what the round's items may be found to repeat before they are answered

        def settled(out: Record | Rejection) -> None:
            sink(out)
            if isinstance(out, Rejection) and out.kind == "duplicate":
                progress.settled((out,))  # counted as kept when it arrived

        settler = RoundSettler(self.pool, deduper, settled, self.with_outputs)
        try:
            yield settler.offer
            pool = settler.finish().pool
        except BaseException:
            sink.writer.discard()
            raise
        sink.writer.commit()
        self.totals.merge(sink.totals)
        self.pool = pool
        self.rounds_done = round_no
        t = sink.totals
        logger.info(
            "round %d: %d kept, %d rejected %s in %.1fs",
            round_no,
            t.count("kept"),
            sum(t.by_rule.values()),
            dict(t.by_rule.most_common()),
            time.time() - started,
        )


def stop_status(exc: BaseException) -> tuple[str, str]:
    """The manifest's status and reason for a run that ended with ``exc``."""
    if isinstance(exc, BackendError):
        return "stopped", str(exc)
    if isinstance(exc, BudgetExceeded):
        return "budget_exhausted", str(exc)
    return "interrupted", "interrupted; run the same command again to resume"
