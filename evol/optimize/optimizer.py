"""Auto Evol-Instruct (Zeng et al., 2024): an optimizer model improves the evolving method on the user's seeds.

Each step evolves a mini-batch of seeds for a few rounds with the current method, has the optimizer name the
failures in those trajectories, asks it for several candidate methods, and measures each candidate's failure
rate on a held-out development set with evol's own pipeline (Evolver.step, its rules and judge, dedup). The
lowest rate wins if it beats the current method; the loop stops when no candidate does. Every call goes
through the call cache in the output folder, under sample ids made of the step, stage and seed, so the same
command run again after a kill pays for nothing twice and, given the same answers, decides the same way.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from evol.config import RunConfig
from evol.errors import BackendError, ConfigError, InputError, TemplateError
from evol.evolve.evolver import Evolver
from evol.evolve.progress import LiveTally, current
from evol.evolve.settling import make_deduper, settle_round
from evol.llm.cache import CachedChat, CallCache
from evol.models import Models, Node, Seed
from evol.optimize.types import Baseline, Evaluation, MethodCandidate, OptimizeOptions, OptimizeReport, Start, Step
from evol.prompts import (
    Operation,
    Profile,
    Prompt,
    check_extract,
    default_prompts_dir,
    load_profile,
)
from evol.rundir.files import atomic_write, write_json
from evol.rundir.folder import CACHE, OPTIMIZE, PROMPTS, RunDir
from evol.seeds import load_seeds

NEW_METHOD = "#New Method#"  # the heading the optimizer writes a candidate method under (propose.txt)
_EXCERPT = 600  # characters of an instruction shown to the optimizer: enough to judge, not a whole page


def load_report(path: Path) -> OptimizeReport:
    return OptimizeReport.model_validate_json(Path(path).read_text(encoding="utf-8"))


T = TypeVar("T")
#: how the loop runs each of its stages: awaited in place (the local engine) or as a Prefect task (the default)
StageRunner = Callable[[str, Callable[[], Awaitable[Any]]], Awaitable[Any]]


async def in_place(name: str, work: Callable[[], Awaitable[T]]) -> T:
    return await work()


def method_operation(profile: Profile) -> Operation:
    """The one operation an optimizer rewrites: the profile's operation with an ``extract`` marker."""
    ops = [op for op in profile.operations if op.extract]
    if len(ops) != 1 or len(profile.operations) != 1:
        raise ConfigError(
            f"evol optimize needs a profile with exactly one operation that has an extract marker, "
            f"such as 'auto'; profile '{profile.name}' has {len(profile.operations)} operation(s), "
            f"{len(ops)} with one."
        )
    return ops[0]


def with_method(profile: Profile, op: Operation, text: str) -> Profile:
    """``profile`` with ``text`` as its one operation's template; a TemplateError says why a text cannot be one."""
    prompt = Prompt.from_text(op.name, text, {"instruction", *op.choices}, path="<candidate method>")
    check_extract(op.extract, prompt, "<candidate method>")
    new_op = dataclasses.replace(op, prompt=prompt, weight=1.0)
    return dataclasses.replace(profile, operations=(new_op,), schedule=())


def candidate_text(answer: str) -> str | None:
    """The method the optimizer wrote after its #New Method# line, a code fence around it taken off."""
    _, sep, rest = answer.rpartition(NEW_METHOD)
    if not sep:
        return None
    text = rest.lstrip(":* \t").strip("\n")
    lines = text.strip().splitlines()
    if len(lines) >= 2 and lines[0].startswith("```") and lines[-1].strip() == "```":
        text = "\n".join(lines[1:-1])
    return text.strip() + "\n" if text.strip() else None


def split_seeds(config: RunConfig, opts: OptimizeOptions) -> tuple[list[Seed], list[Seed]]:
    """(mini-batch pool, development set): the dev file's seeds, else the last ``dev_size`` seeds."""
    from evol.evolve.run import read_seeds

    seeds = read_seeds(config).seeds
    if opts.dev_file is not None:
        dev = load_seeds(
            opts.dev_file,
            instruction_field=config.instruction_field,
            input_field=config.input_field,
            max_chars=config.max_instruction_chars,
        ).seeds
        if not dev:
            raise InputError(f"{opts.dev_file} holds no usable seed instructions for the development set.")
        dev_ids = {s.id for s in dev}
        train = [s for s in seeds if s.id not in dev_ids]
    else:
        if len(seeds) <= opts.dev_size:
            raise InputError(
                f"{config.seeds} has {len(seeds)} usable seeds; --dev-size {opts.dev_size} leaves none "
                f"for the mini-batches (lower it or pass --dev-file)."
            )
        train, dev = seeds[: -opts.dev_size], seeds[-opts.dev_size :]
    if not train:
        raise InputError(f"Every seed of {config.seeds} is in the development set; the mini-batches need others.")
    return train, dev


class Optimizer:
    def __init__(
        self,
        config: RunConfig,
        opts: OptimizeOptions,
        profile: Profile,
        chat: CachedChat,
        models: Models,
        train: list[Seed],
        dev: list[Seed],
        stage: StageRunner = in_place,
        baseline: Profile | None = None,
    ):
        self.config, self.opts, self.chat, self.models = config, opts, chat, models
        self.stage, self.baseline = stage, baseline
        self.profile, self.op = profile, method_operation(profile)
        self.train, self.dev = train, dev
        self.optimizer_model = opts.optimizer_model or models.evolve
        self.tally = LiveTally()  # the calls and their cost, on the terminal while it runs and in optimize.json
        self.caller = Evolver(config, profile, chat, models, self.tally)  # the optimizer's calls: budget, tally
        folder = (config.prompts_dir or default_prompts_dir()) / profile.name
        self.analyze = Prompt.load(folder / "analyze.txt", {"method", "trajectories"})
        self.propose = Prompt.load(folder / "propose.txt", {"method", "analysis", "variant", "count", "marker"})

    async def evaluate(self, profile: Profile) -> Evaluation:
        evolver = Evolver(self.config, profile, self.chat, self.models, self.tally)
        pool = [Node.from_seed(s) for s in self.dev]
        result = settle_round(pool, await evolver.run_round(pool, 1), make_deduper(self.config, self.dev))
        failed = [r for r in result.rejected if r.kind == "failed"]
        lost = [r for r in result.rejected if r.kind != "failed"]
        attempts = len(pool) - len(failed)
        return Evaluation(
            attempts=attempts,
            failures=len(lost),
            failure_rate=round(len(lost) / attempts, 6) if attempts else 1.0,
            by_rule=dict(sorted(Counter(r.rule for r in lost).items())),
            calls_failed=len(failed),
        )

    async def trajectories(self, profile: Profile, batch: list[Seed]) -> str:
        """The mini-batch evolved for a few rounds with ``profile``, as text for the optimizer."""
        evolver = Evolver(self.config, profile, self.chat, self.models, self.tally)
        pool, deduper = [Node.from_seed(s) for s in batch], make_deduper(self.config, batch)
        lines: dict[str, list[str]] = {
            s.id: [f"Instruction {i}: {_excerpt(s.instruction)}"] for i, s in enumerate(batch, 1)
        }
        for round_no in range(1, self.opts.trajectory_rounds + 1):
            result = settle_round(pool, await evolver.run_round(pool, round_no), deduper)
            for rec in result.kept:
                lines[rec.seed_id].append(f"  round {round_no}: kept: {_excerpt(rec.instruction)}")
            for rej in result.rejected:
                lines[rej.seed_id].append(
                    f"  round {round_no}: {rej.kind} ({rej.rule}: {rej.detail}): {_excerpt(rej.instruction or '')}"
                )
            pool = result.pool
        return "\n".join("\n".join(lines[s.id]) for s in batch)

    def minibatch(self, step: int) -> list[Seed]:
        rng = random.Random(f"{self.config.seed}:minibatch:{step}")
        return sorted(rng.sample(self.train, min(self.opts.batch_size, len(self.train))), key=lambda s: s.index)

    async def ask(self, prompt: str, sample: str) -> str:
        c = await self.caller.call("optimize", self.optimizer_model, prompt, self.config.sampling, sample)
        return c.text

    async def candidate(self, step: int, i: int, method: str, analysis: str) -> MethodCandidate:
        return await self.phase(f"candidate-step-{step}-{i}", lambda: self._candidate(step, i, method, analysis))

    async def _candidate(self, step: int, i: int, method: str, analysis: str) -> MethodCandidate:
        prompt = self.propose.render(
            method=method,
            analysis=analysis,
            variant=str(i),
            count=str(self.opts.candidates),
            marker=self.op.extract or "",
        )
        try:
            text = candidate_text(await self.ask(prompt, f"optimize:step{step}:propose:{i}"))
        except BackendError as exc:
            if exc.fatal:
                raise
            return MethodCandidate(index=i, method="", valid=False, reason=f"the optimizer's call failed: {exc}")
        if text is None:
            return MethodCandidate(
                index=i, method="", valid=False, reason=f"the optimizer wrote no '{NEW_METHOD}' section"
            )
        try:
            profile = with_method(self.profile, self.op, text)
        except TemplateError as exc:
            return MethodCandidate(index=i, method=text, valid=False, reason=str(exc))
        return MethodCandidate(index=i, method=text, valid=True, evaluation=await self.evaluate(profile))

    def books(self, report: OptimizeReport, **update: Any) -> OptimizeReport:
        """``report`` with the calls, tokens and cost so far."""
        return report.model_copy(
            update={
                **update,
                "usage": self.tally.as_dict(),
                "cost_usd": self.tally.cost_books(self.config.price_table(), self.config.budget_usd),
            }
        )

    async def phase(self, name: str, work: Callable[[], Awaitable[T]]) -> T:
        current().phase(name)
        return await self.stage(name, work)

    async def run(self, save) -> OptimizeReport:
        """The loop; ``save`` gets the report after the start and after every step."""
        start_text = self.op.prompt.text
        start = Start(
            index=0,
            method=start_text,
            valid=True,
            kept=True,
            evaluation=await self.phase("evaluate-start", lambda: self.evaluate(self.profile)),
        )
        baseline = None
        if self.baseline is not None:
            base = self.baseline
            baseline = Baseline(
                profile=base.name,
                evaluation=await self.phase(f"evaluate-baseline-{base.name}", lambda: self.evaluate(base)),
            )
        report = OptimizeReport(
            status="running",
            reason="",
            profile=self.profile.name,
            operation=self.op.name,
            evolve_model=self.models.evolve,
            optimizer_model=self.optimizer_model,
            dev=tuple(s.id for s in self.dev),
            start=start,
            baseline=baseline,
            best_method=start_text,
            best_failure_rate=start.evaluation.failure_rate,
        )
        save(self.books(report))
        reason = f"ran all {self.opts.steps} steps"
        for step in range(1, self.opts.steps + 1):
            best_profile = with_method(self.profile, self.op, report.best_method)
            batch = self.minibatch(step)
            traj = await self.phase(f"trajectories-step-{step}", partial(self.trajectories, best_profile, batch))
            prompt = self.analyze.render(method=report.best_method, trajectories=traj)
            analysis = await self.phase(
                f"analyze-step-{step}", partial(self.ask, prompt, f"optimize:step{step}:analyze")
            )
            cands = await asyncio.gather(
                *(self.candidate(step, i, report.best_method, analysis) for i in range(1, self.opts.candidates + 1))
            )
            rated = [(c.evaluation.failure_rate, c.index, c) for c in cands if c.valid and c.evaluation is not None]
            # the lowest rate wins, the earliest on a tie; it must beat the current method, so a step never loses ground
            winner = min(rated, key=lambda r: r[:2], default=None)
            best_method, best_rate, improved = report.best_method, report.best_failure_rate, False
            if winner is not None and winner[0] < best_rate:
                best_rate, _, kept = winner
                best_method, improved = kept.method, True
                cands = [c.model_copy(update={"kept": c is kept}) for c in cands]
            report = report.model_copy(
                update={
                    "steps": (
                        *report.steps,
                        Step(
                            step=step,
                            batch=tuple(s.id for s in batch),
                            analysis=analysis,
                            candidates=tuple(cands),
                            best_failure_rate=best_rate,
                            improved=improved,
                        ),
                    ),
                    "best_method": best_method,
                    "best_failure_rate": best_rate,
                }
            )
            save(self.books(report))
            if not improved:
                reason = f"step {step}: no candidate beat the failure rate {best_rate:.3f}"
                break
        return self.books(report, status="complete", reason=reason)


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _EXCERPT else text[:_EXCERPT] + " …"


def write_profile(out: RunDir, config: RunConfig, profile: Profile, op: Operation, method: str) -> Path:
    """DIR/prompts: the source profile folder and shared templates, with the optimized method in place, so
    ``evol run --prompts-dir DIR/prompts --profile NAME`` runs it as is."""
    source = config.prompts_dir or default_prompts_dir()
    root = out / PROMPTS
    for f in sorted(source.glob("*.txt")):  # judge.txt, complexity.txt, quality.txt
        atomic_write(root / f.name, [f.read_text(encoding="utf-8")])
    for f in sorted((source / profile.name).iterdir()):
        if f.is_file():
            atomic_write(root / profile.name / f.name, [f.read_text(encoding="utf-8")])
    atomic_write(root / profile.name / Path(op.prompt.path).name, [method])
    load_profile(profile.name, root)  # what was written loads, or this fails here and not in a later run
    return root


def check_optimize(config: RunConfig, opts: OptimizeOptions) -> tuple[Profile, Profile | None, list[Seed], list[Seed]]:
    """The profile, the baseline profile and the seeds, or a one-sentence error, before anything starts."""
    if config.batch:
        raise ConfigError("evol optimize does not take --batch: each step waits for the one before it.")
    profile = load_profile(config.profile, config.prompts_dir, config.operation_weights)
    method_operation(profile)
    baseline = None
    if opts.baseline_profile is not None:
        try:
            baseline = load_profile(opts.baseline_profile, config.prompts_dir)
        except ConfigError as exc:
            raise ConfigError(
                f"--baseline-profile: {str(exc).rstrip('.')}; pass --baseline-profile none to leave the comparison out."
            ) from None
    train, dev = split_seeds(config, opts)
    return profile, baseline, train, dev


async def optimize(config: RunConfig, opts: OptimizeOptions, stage: StageRunner = in_place) -> OptimizeReport:
    """Everything ``python -m evol optimize`` does: check inputs, open the backend, lock DIR, optimize;
    ``stage`` runs each stage of the loop (the Prefect flow makes each one a task)."""
    from evol.llm.backend import open_backend

    profile, baseline, train, dev = check_optimize(config, opts)
    run_dir = RunDir(opts.out)
    with run_dir:
        async with open_backend(config) as (chat, models, config):
            cache = CallCache(run_dir / CACHE)
            try:
                opt = Optimizer(config, opts, profile, CachedChat(chat, cache), models, train, dev, stage, baseline)
                report = await opt.run(lambda r: write_json(run_dir / OPTIMIZE, r.model_dump(mode="json")))
                write_profile(run_dir, config, profile, opt.op, report.best_method)
                write_json(run_dir / OPTIMIZE, report.model_dump(mode="json"))
            finally:
                cache.close()
    return report
