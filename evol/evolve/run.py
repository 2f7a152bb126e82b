"""What every engine does to start and finish a run: check the inputs, name the run and its folder, write the
outputs and the manifest from the spool. The engines (``evol.engines``) only schedule the rounds in between."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Protocol

from evol.config import ABSENT_AT_DEFAULT, EXECUTION_ONLY, RULES, RunConfig
from evol.errors import InputError
from evol.evolve.rounds import RunState
from evol.llm.local.setup import is_embedded, tune_for_local, uses_embedded_model
from evol.llm.usage import Tally
from evol.models import Models
from evol.prompts import Profile, load_profile
from evol.rundir.files import atomic_write
from evol.rundir.folder import DATASET, MANIFEST, RECORDS, REJECTED, RunDir
from evol.rundir.manifest import (
    AnswerSettings,
    Backend,
    CacheCount,
    ConcurrencyBooks,
    CostBooks,
    Counts,
    Estimate,
    JudgeBooks,
    Manifest,
    ProfileInfo,
    RoundCounts,
    UsageBooks,
    write_manifest,
)
from evol.seeds import SeedSet, load_seeds

log = logging.getLogger("evol")


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


#: the options the profile and the seeds are read from: a config equal in these has the same inputs
INPUT_OPTIONS = (
    "profile",
    "prompts_dir",
    "operation_weights",
    "seeds",
    "instruction_field",
    "input_field",
    "limit",
    "max_instruction_chars",
)
#: the inputs of the run under way in this context, with the options they were read from (``inputs_checked``)
_CHECKED: ContextVar[tuple[str, Profile, SeedSet] | None] = ContextVar("evol_checked_inputs", default=None)


def _input_key(config: RunConfig) -> str:
    public = config.public_dict()
    return json.dumps({k: public.get(k) for k in INPUT_OPTIONS}, sort_keys=True, default=str)


def check_inputs(config: RunConfig) -> tuple[Profile, SeedSet]:
    """Load the profile's templates and the seeds, raising a one-sentence error for bad input; inside
    ``inputs_checked`` for the same inputs, what that read."""
    from evol.llm.backend import check_batch

    check_batch(config)  # --batch with the embedded model: before a run folder, a server or Prefect starts
    held = _CHECKED.get()
    if held is not None and held[0] == _input_key(config):
        return held[1], held[2]
    return load_profile(config.profile, config.prompts_dir, config.operation_weights), read_seeds(config)


@contextlib.contextmanager
def inputs_checked(config: RunConfig) -> Iterator[tuple[Profile, SeedSet]]:
    """Check a run's inputs once for everything inside the block: the Prefect path checks them in the CLI (before
    Prefect spends seconds starting), in the flow (a scheduled run has no CLI) and in its pipeline subflow (which
    needs them), and each of these reads the seeds and templates only the first time."""
    profile, seedset = check_inputs(config)
    token = _CHECKED.set((_input_key(config), profile, seedset))
    try:
        yield profile, seedset
    finally:
        _CHECKED.reset(token)


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
    data = {
        k: v
        for k, v in config.public_dict().items()
        if k not in EXECUTION_ONLY and not (k in ABSENT_AT_DEFAULT and v == ABSENT_AT_DEFAULT[k])
    }
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:10]
    return f"{config.profile}-{digest}"


def default_out(config: RunConfig) -> str:
    """The run folder: ``--out`` as given (a path or a URL), else datasets/runs/<run-id>."""
    return config.out or str(Path("datasets") / "runs" / run_id_for(config))


def read_seeds(config: RunConfig) -> SeedSet:
    seedset = load_seeds(
        config.seeds,
        instruction_field=config.instruction_field,
        input_field=config.input_field,
        limit=config.limit,
        max_chars=config.max_instruction_chars,
    )
    if not seedset.seeds:
        raise InputError(f"{config.seeds} holds no usable seed instructions ({len(seedset.skipped)} skipped).")
    return seedset


class CacheBooks(Protocol):
    """What the manifest reads of the call cache: a run's CachedChat, or the flow's sum over its chunks."""

    identity: str
    hits: int
    misses: int


@dataclass
class RunContext:
    """What a run's outputs are written from: fixed when it starts, but for its state and books, which grow."""

    run_dir: RunDir
    config: RunConfig
    profile: Profile
    models: Models
    state: RunState
    tally: Tally
    started: float
    chat: CacheBooks
    #: ``--concurrency auto``'s books so far (``AdaptiveLimit.books``), or None with a fixed concurrency
    concurrency: Callable[[], dict | None] = lambda: None
    #: what the run was expected to cost, made before its first call (``evol.evolve.estimate.plan``)
    estimate: Estimate | None = None

    def plan(self) -> None:
        """The estimate, from the folder's finished rounds if it has any (the manifest there is the last run's)."""
        from evol.evolve.estimate import plan

        m = self.models
        self.estimate = plan(
            self.config, self.profile, self.state.seedset, self.run_dir.path, (m.evolve, m.respond, m.judge)
        )

    def announce(self, logger: logging.Logger | logging.LoggerAdapter) -> None:
        """The run's first line in the log, the same on every engine."""
        seedset = self.state.seedset
        logger.info(
            "run: %d seeds (%d skipped), %d rounds, profile %s, into %s",
            len(seedset.seeds),
            len(seedset.skipped),
            self.config.rounds,
            self.profile.name,
            self.run_dir.where,
        )


def write_outputs(ctx: RunContext, status: str, reason: str) -> Manifest:
    """The outputs from the spool (seeds, then round by round in seed order), the manifest last."""
    run_dir, state = ctx.run_dir, ctx.state
    atomic_write(run_dir / DATASET, state.spool.dataset())
    atomic_write(run_dir / RECORDS, state.spool.lines("records"))
    atomic_write(run_dir / REJECTED, state.spool.lines("rejected"))
    manifest = build_manifest(ctx, status, reason)
    write_manifest(run_dir.path, manifest)
    run_dir.publish(DATASET, RECORDS, REJECTED, MANIFEST)  # at a URL: copied there, the manifest last
    run_dir.settle()
    if status == "complete":  # nothing left to rebuild the outputs for
        state.spool.remove()
    return manifest


def build_manifest(ctx: RunContext, status: str, reason: str) -> Manifest:
    config, profile, models, state, tally, started, chat = (
        ctx.config,
        ctx.profile,
        ctx.models,
        ctx.state,
        ctx.tally,
        ctx.started,
        ctx.chat,
    )
    t = state.totals
    kinds = ("kept", "eliminated", "duplicate", "failed")
    per_round = {}
    for n in range(1, state.rounds_done + 1):
        c = t.by_round.get(n, Counter())
        per_round[str(n)] = RoundCounts(attempts=sum(c[k] for k in kinds), **{k: c[k] for k in kinds})
    n_seeds = len(state.seedset.seeds)
    attempts = sum(r.attempts for r in per_round.values())
    outcomes = {k: t.count(k) for k in kinds}
    counts = Counts(
        seeds=n_seeds,
        seeds_skipped=len(state.seedset.skipped),
        rounds_done=state.rounds_done,
        attempts=attempts,
        **outcomes,
        seed_records=t.seed_records,
        seed_rejections=t.seed_rejections,
        dataset_rows=t.seed_records + t.count("kept"),
        seeds_with_kept_descendants=len(t.seeds_with_kept),
        seeds_without_kept_descendants=n_seeds - len(t.seeds_with_kept),
        judge_unclear=t.judge["unclear"],
        # every seed tried once per round on each of its lines: each attempt is kept, eliminated, a duplicate or failed
        balanced=attempts == len(state.pool) * state.rounds_done == sum(outcomes.values()),
    )
    return Manifest(
        out=ctx.run_dir.where,
        status=status,
        reason=reason,
        run_id=run_id_for(config, embedded=is_embedded(chat.identity)),
        started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        seconds=round(time.time() - started, 3),
        config=config.public_dict(),
        backend=Backend(
            identity=chat.identity,
            evolve_model=models.evolve,
            response_model=models.respond,
            judge_model=models.judge,
            response_models=config.response_models or None,
        ),
        answers=answer_settings(config) if config.ranks_answers else None,
        seed_files=state.seedset.files,
        profile=ProfileInfo(name=profile.name, operations={op.name: op.weight for op in profile.operations}),
        prompt_sha256={**profile.template_hashes(), **_answer_hashes(config)},
        versions=_versions(),
        counts=counts,
        by_round=per_round,
        by_rule=dict(sorted(t.by_rule.items())),
        rules={name: config.rule_on(name) for name in RULES},  # every rule of the registry: on or off
        by_operation={k: dict(v) for k, v in sorted(t.by_operation.items())},
        judge=JudgeBooks(**{k: t.judge[k] for k in ("judged", "unclear", "resolved_by_retry", "unclear_after_retry")}),
        usage=UsageBooks.model_validate(tally.as_dict()),
        cost_usd=CostBooks.model_validate(tally.cost_books(config.price_table(), config.budget_usd)),
        cache=CacheCount(hits=chat.hits, misses=chat.misses),
        concurrency=ConcurrencyBooks.model_validate(books) if (books := ctx.concurrency()) else None,
        estimate=ctx.estimate,
    )


def _answer_hashes(config: RunConfig) -> dict[str, str]:
    if not config.ranks_answers:
        return {}
    from evol.evolve.answers import load_answer_prompts

    return load_answer_prompts(config.prompts_dir).hashes()


def answer_settings(config: RunConfig) -> AnswerSettings:
    """How the answers were made, for the manifest and the dataset card."""
    return AnswerSettings(
        candidates=config.candidate_count,
        evolve_answers=config.evolve_answers,
        ranking="pointwise 1-10 score with a reason, one judge call per candidate",
    )


def _versions() -> dict[str, str]:
    out = {}
    for pkg in ("evol", "openai", "pydantic", "tenacity", "rapidfuzz", "pandas", "prefect", "xllamacpp"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[pkg] = metadata.version(pkg)
    return out
