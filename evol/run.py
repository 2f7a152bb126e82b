"""A whole run without any orchestrator: seeds in, run directory out. Prefect flows call the same pieces."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from .batch import open_batching
from .cache import CachedChat, CallCache
from .config import ABSENT_AT_DEFAULT, EXECUTION_ONLY, RunConfig
from .errors import BackendError, BudgetExceeded, InputError
from .llm import ChatModel
from .local import is_embedded, tune_for_local, uses_embedded_model
from .models import Node, Record, Rejection
from .pipeline import Evolver, Models, RoundSettler, Tally, bounded_map, make_deduper
from .pricing import cost
from .progress import LiveTally, current
from .prompts import Profile, load_profile
from .rundir import CACHE, DATASET, MANIFEST, RECORDS, REJECTED, RunDir, atomic_write, write_json
from .spool import RoundSink, Spool, Totals
from .seeds import SeedSet, load_seeds

log = logging.getLogger("evol")


async def execute(config: RunConfig) -> dict:
    """Everything ``python -m evol run`` does: check inputs, open the backend, lock the run folder, run."""
    from .backend import open_backend  # here, so the core imports without the SDK's start-up cost

    profile, seedset = check_inputs(config)  # bad input fails before any server starts or any money is spent
    run_dir = RunDir(default_out(config))
    with run_dir, fewer_gc_pauses():
        async with open_backend(config) as (chat, models, config):
            return await run_pipeline(config, chat, models, run_dir, profile, seedset)


@contextlib.contextmanager
def fewer_gc_pauses(gen0: int = 50_000) -> Iterator[None]:
    """Collect young objects every 50,000 allocations instead of every 700 while a run lasts.

    Each call allocates thousands of short-lived objects (request, response, models), so the default
    threshold runs the cyclic collector hundreds of times a second: raising it cut the client's CPU per
    call by about a tenth in ``bench.throughput``, for a few MB more held between collections.
    """
    old = gc.get_threshold()
    gc.set_threshold(max(gen0, old[0]), *old[1:])
    try:
        yield
    finally:
        gc.set_threshold(*old)


def check_inputs(config: RunConfig) -> tuple[Profile, SeedSet]:
    """Load the profile's templates and the seeds, raising a one-sentence error for bad input."""
    from .backend import check_batch

    check_batch(config)  # --batch with the embedded model: before a run folder, a server or Prefect starts
    return load_profile(config.profile, config.prompts_dir, config.operation_weights), read_seeds(config)


def run_id_for(config: RunConfig, *, embedded: bool | None = None) -> str:
    """Same command, same run id: re-running it resumes (and pays for nothing already answered).

    For the embedded model its defaults are filled in first (``tune_for_local``), so the id is the same
    before the backend is opened (the folder's name) and after (the manifest's); ``embedded`` says which
    backend the run has when the config alone cannot tell (a flow's config carries no key).
    """
    if embedded is None:
        embedded = uses_embedded_model(config)
    if embedded:
        config = tune_for_local(config)
    data = {k: v for k, v in config.public_dict().items()
            if k not in EXECUTION_ONLY and not (k in ABSENT_AT_DEFAULT and v == ABSENT_AT_DEFAULT[k])}
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:10]
    return f"{config.profile}-{digest}"


def default_out(config: RunConfig) -> Path:
    return config.out or Path("datasets") / "runs" / run_id_for(config)


def read_seeds(config: RunConfig) -> SeedSet:
    seedset = load_seeds(
        config.seeds, instruction_field=config.instruction_field, input_field=config.input_field,
        limit=config.limit, max_chars=config.max_instruction_chars,
    )
    if not seedset.seeds:
        raise InputError(f"{config.seeds} holds no usable seed instructions ({len(seedset.skipped)} skipped).")
    return seedset


@dataclass
class RunState:
    """Everything a run has decided so far: the pool, the totals, and the settled rounds in the spool."""

    seedset: SeedSet
    spool: Spool
    pool: list[Node] = field(default_factory=list)
    totals: Totals = field(default_factory=Totals)
    rounds_done: int = 0

    @classmethod
    def start(cls, seedset: SeedSet, run_dir: RunDir) -> "RunState":
        """A fresh state over an emptied spool; the skipped seeds are round 0's rejections until seeds are answered."""
        spool = Spool(run_dir)
        spool.reset()
        state = cls(seedset=seedset, spool=spool, pool=[Node.from_seed(s) for s in seedset.seeds])
        spool.put(0, [], seedset.skipped)
        state.totals.add(seedset.skipped)
        return state

    def apply_seeds(self, outcomes: list[Record | Rejection]) -> None:
        """Take the answered seeds (include_seeds) into round 0, beside the skipped ones."""
        records = [o for o in outcomes if isinstance(o, Record)]
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

        def settled(out: Record | Rejection) -> None:
            sink(out)
            if isinstance(out, Rejection) and out.kind == "duplicate":
                progress.settled((out,))  # counted as kept when it arrived

        settler = RoundSettler(self.pool, deduper, settled)
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
        logger.info("round %d: %d kept, %d rejected %s in %.1fs", round_no, t.count("kept"), sum(t.by_rule.values()),
                    dict(t.by_rule.most_common()), time.time() - started)


def stop_status(exc: BaseException) -> tuple[str, str]:
    """The manifest's status and reason for a run that ended with ``exc``."""
    if isinstance(exc, BackendError):
        return "stopped", str(exc)
    if isinstance(exc, BudgetExceeded):
        return "budget_exhausted", str(exc)
    return "interrupted", "interrupted; run the same command again to resume"


async def run_pipeline(config: RunConfig, chat: ChatModel, models: Models, run_dir: RunDir,
                       profile: Profile | None = None, seedset: SeedSet | None = None) -> dict:
    """Run every round and write the run directory; returns the manifest."""
    profile = profile or load_profile(config.profile, config.prompts_dir, config.operation_weights)
    seedset = seedset or read_seeds(config)
    started = time.time()
    cache = CallCache(run_dir / CACHE)
    try:  # --batch: calls go out as Batch API files; the pipeline does not know the difference
        batching = await open_batching(chat, config, cache) if config.batch else None
    except BaseException:
        cache.close()
        raise
    cached_chat = CachedChat(batching or chat, cache)
    tally = LiveTally()
    progress = current()
    evolver = Evolver(config, profile, cached_chat, models, tally)
    state = RunState.start(seedset, run_dir)
    deduper = make_deduper(config, seedset.seeds)
    status, reason = "complete", ""
    log.info("run: %d seeds (%d skipped), %d rounds, profile %s, into %s",
             len(seedset.seeds), len(seedset.skipped), config.rounds, profile.name, run_dir.path)
    try:
        if config.include_seeds:
            progress.round_start(0, config.rounds, len(seedset.seeds))
            state.apply_seeds(await bounded_map(evolver.answer_seed, seedset.seeds, evolver.workers, progress.item))
        for round_no in range(1, config.rounds + 1):
            await play_round(evolver, state, deduper, round_no, config.rounds)
            if round_no < config.rounds:  # after the last one, the final write below is the only one
                write_outputs(run_dir, config, profile, models, state, tally, "running", "", started, cached_chat)
    except BaseException as exc:  # what is done is still written out, with why the run stopped
        status, reason = stop_status(exc)
        raise
    finally:
        manifest = write_outputs(run_dir, config, profile, models, state, tally, status, reason, started, cached_chat)
        if batching is not None:
            await batching.aclose()  # submitted batches run on; the same command collects them
        cache.close()
    return manifest


async def play_round(evolver: Evolver, state: RunState, deduper, round_no: int, rounds: int) -> None:
    """One round, each outcome settled and written to the round's spool files as soon as every earlier one
    (in pool order) is: no list of the round's outcomes is held, and nothing is left to do when the last
    answer arrives."""
    progress = current()
    progress.round_start(round_no, rounds, len(state.pool))
    with state.settling(deduper, round_no) as offer:

        def done(out: Record | Rejection) -> None:
            progress.item(out)
            offer(out)

        await evolver.run_round(state.pool, round_no, done, collect=False)


def write_outputs(run_dir: RunDir, config: RunConfig, profile: Profile, models: Models, state: RunState,
                  tally: Tally, status: str, reason: str, started: float, chat: CachedChat) -> dict:
    """The outputs from the spool (seeds, then round by round in seed order), the manifest last."""
    atomic_write(run_dir / DATASET, state.spool.dataset())
    atomic_write(run_dir / RECORDS, state.spool.lines("records"))
    atomic_write(run_dir / REJECTED, state.spool.lines("rejected"))
    manifest = {"out": str(run_dir.path), **build_manifest(config, profile, models, state, tally, status, reason, started, chat)}
    write_json(run_dir / MANIFEST, manifest)
    if status == "complete":  # nothing left to rebuild the outputs for
        state.spool.remove()
    return manifest


def build_manifest(config: RunConfig, profile: Profile, models: Models, state: RunState, tally: Tally,
                   status: str, reason: str, started: float, chat: CachedChat) -> dict:
    t = state.totals
    kinds = ("kept", "eliminated", "duplicate", "failed")
    per_round = {}
    for n in range(1, state.rounds_done + 1):
        c = t.by_round.get(n, Counter())
        per_round[str(n)] = {"attempts": sum(c[k] for k in kinds), **{k: c[k] for k in kinds}}
    n_seeds = len(state.seedset.seeds)
    counts = {
        "seeds": n_seeds,
        "seeds_skipped": len(state.seedset.skipped),
        "rounds_done": state.rounds_done,
        "attempts": sum(r["attempts"] for r in per_round.values()),
        **{k: t.count(k) for k in kinds},
        "seed_records": t.seed_records,
        "seed_rejections": t.seed_rejections,
        "dataset_rows": t.seed_records + t.count("kept"),
        "seeds_with_kept_descendants": len(t.seeds_with_kept),
        "seeds_without_kept_descendants": n_seeds - len(t.seeds_with_kept),
        # evolutions whose judge's first answer read as no verdict, resolved by the retry or not
        "judge_unclear": t.judge["unclear"],
    }
    # every seed tried once per round: each attempt is kept, eliminated, a duplicate or failed
    counts["balanced"] = counts["attempts"] == n_seeds * state.rounds_done == sum(counts[k] for k in kinds)
    return {
        "status": status,
        "reason": reason,
        "run_id": run_id_for(config, embedded=is_embedded(chat.identity)),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": round(time.time() - started, 3),
        "config": config.public_dict(),
        "backend": {"identity": chat.identity, "evolve_model": models.evolve, "response_model": models.respond,
                    "judge_model": models.judge, **({"response_models": config.response_models} if config.response_models else {})},
        **({"answers": answer_settings(config)} if config.ranks_answers else {}),
        "seed_files": state.seedset.files,
        "profile": {"name": profile.name, "operations": {op.name: op.weight for op in profile.operations}},
        "prompt_sha256": {**profile.template_hashes(), **_answer_hashes(config)},
        "versions": _versions(),
        "counts": counts,
        "by_round": per_round,
        "by_rule": dict(sorted(t.by_rule.items())),
        "by_operation": {k: dict(v) for k, v in sorted(t.by_operation.items())},
        "judge": {k: t.judge[k] for k in ("judged", "unclear", "resolved_by_retry", "unclear_after_retry")},
        "usage": tally.as_dict(),
        "cost_usd": _cost(tally, config),
        "cache": {"hits": chat.hits, "misses": chat.misses},
    }


def _cost(tally: Tally, config: RunConfig) -> dict:
    prices = config.price_table()
    total, unpriced = cost(tally.by_model, prices)
    # per stage too: several candidates, answer evolution and ranking multiply the answer stage's spend
    by_stage = {stage: round(cost(models, prices)[0], 6) for stage, models in sorted(tally.stage_models().items())}
    return {"total": round(total, 6), "budget": config.budget_usd, "unpriced_models": unpriced, "by_stage": by_stage}


def _answer_hashes(config: RunConfig) -> dict[str, str]:
    if not config.ranks_answers:
        return {}
    from .answers import load_answer_prompts

    return load_answer_prompts(config.prompts_dir).hashes()


def answer_settings(config: RunConfig) -> dict:
    """How the answers were made, for the manifest and the dataset card."""
    return {"candidates": config.candidate_count, "evolve_answers": config.evolve_answers,
            "ranking": "pointwise 1-10 score with a reason, one judge call per candidate"}


def _versions() -> dict[str, str]:
    out = {}
    for pkg in ("evol", "openai", "pydantic", "tenacity", "rapidfuzz", "pandas", "prefect", "xllamacpp"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out
