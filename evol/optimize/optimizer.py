"""Auto Evol-Instruct (Zeng et al., 2024): an optimizer model improves the evolving method on the user's seeds.

Each step evolves a mini-batch of seeds for a few rounds with the current method; for each of the m candidates
the optimizer writes its own analysis of those trajectories and a method from it (the paper samples m analyses
and m optimizations). Each candidate's failure rate is measured on a held-out development set with evol's own
pipeline (Evolver.step, its rules and judge, dedup), each failure counted under the paper's kinds, and so is its
complexity figure (how much longer an answer its evolutions draw than their seeds do). The lowest rate wins if
it beats the current method and its complexity did not fall, so a method that changes little cannot win by
failing little; the loop stops after ``patience`` steps in a row without a winner. The leak checks are frozen
from the starting method. Every call goes through the call cache in the output folder, under sample ids made
of the step, stage and seed, so the same command run again after a kill pays for nothing twice and, given the
same answers, decides the same way.
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
from evol.evolve.concurrency import bounded_map
from evol.evolve.evolver import RETRY_MAX_TOKENS, Evolver
from evol.evolve.progress import LiveTally, current
from evol.evolve.settling import make_deduper, settle_round
from evol.llm.cache import CachedChat, CallCache
from evol.models import Models, Node, Rejection, Seed
from evol.optimize.types import (
    FAILURE_KINDS,
    Baseline,
    Evaluation,
    FailureKind,
    MethodCandidate,
    OptimizeOptions,
    OptimizeReport,
    Start,
    Step,
)
from evol.prompts import (
    Operation,
    Profile,
    Prompt,
    check_extract,
    default_prompts_dir,
    load_profile,
)
from evol.rules.clarifications import ONLY_ASKS
from evol.rundir.files import atomic_write, write_json
from evol.rundir.folder import CACHE, OPTIMIZE, PROMPTS, RunDir
from evol.seeds import load_seeds
from evol.text import word_count

NEW_METHOD = "#New Method#"  # the heading the optimizer writes a candidate method under (propose.txt)
_EXCERPT = 600  # characters of an instruction shown to the optimizer: enough to judge, not a whole page
#: a kept evolution's answer counts at most this many times its seed's answer in the complexity figure: one seed whose
#: own answer was a one-line refusal must not outweigh the rest of the development set
COMPLEXITY_CAP = 4.0


def failure_kind(rej: Rejection) -> FailureKind:
    """The paper's kind of a failed evolution. An answer that asks for input the instruction refers to but lacks
    is loss of key information; one that only asks the user to say more is insufficient qualification; the
    equality judge's "nothing gained" is stagnant complexity; every other elimination and duplicate is evol's own."""
    if rej.rule == "clarification_response":
        return "insufficient_qualification" if ONLY_ASKS in rej.detail else "loss_of_key_information"
    if rej.rule == "no_information_gain":
        return "stagnant_complexity"
    return "evol_rules"


def sample_seed(seed: Seed, k: int) -> Seed:
    """The ``k``-th sample of a dev seed (0: the seed itself): its own id, so its calls are sampled afresh."""
    return seed if k == 0 else seed.model_copy(update={"id": f"{seed.id}~{k + 1}"})


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
        # the leak checks of the starting method, kept for every candidate: one that drops its "never use the words
        # …" line must not be checked against fewer phrases (a candidate's own markers are checked too)
        self.leak_phrases = tuple(sorted({*config.leak_phrases, *profile.leak_markers}))
        self.frozen = config.model_copy(update={"leak_phrases": list(self.leak_phrases)})
        self.seed_words: dict[str, int | None] = {}  # each dev seed's answer's words: the complexity figure's base
        self.tally = LiveTally()  # the calls and their cost, on the terminal while it runs and in optimize.json
        self.caller = Evolver(config, profile, chat, models, self.tally)  # the optimizer's calls: budget, tally
        folder = (config.prompts_dir or default_prompts_dir()) / profile.name
        self.analyze = Prompt.load(folder / "analyze.txt", {"method", "trajectories"})
        self.propose = Prompt.load(folder / "propose.txt", {"method", "analysis", "variant", "count", "marker"})

    async def answer_seeds(self, seeds: list[Seed]) -> None:
        """Each seed's answer (its own output where it has one), once: what an evolution's answer is compared with."""
        evolver = Evolver(self.config, self.profile, self.chat, self.models, self.tally)
        todo = [s for s in seeds if s.id not in self.seed_words]
        for seed, out in zip(todo, await bounded_map(evolver.answer_seed, todo, evolver.workers), strict=True):
            # a refused or checked-out answer still says how long the seed's answer is; a failed call does not
            self.seed_words[seed.id] = word_count(out.output) if out.output else None

    async def evaluate(self, profile: Profile, seeds: list[Seed] | None = None, frozen: bool = True) -> Evaluation:
        """``profile`` on ``seeds`` (the dev set): ``dev_samples`` evolutions of each, checked by the pipeline, with
        the leak checks frozen from the starting method unless ``frozen`` is off (a hand-written baseline)."""
        seeds = self.dev if seeds is None else seeds
        await self.answer_seeds(seeds)
        evolver = Evolver(self.frozen if frozen else self.config, profile, self.chat, self.models, self.tally)
        failed: list[Rejection] = []
        lost: list[Rejection] = []
        ratios: list[float] = []
        # each sample is settled on its own: two samples of one seed are not duplicates of each other
        for k in range(self.opts.dev_samples):
            samples = [sample_seed(s, k) for s in seeds]
            origin = {x.id: s.id for x, s in zip(samples, seeds, strict=True)}
            pool = [Node.from_seed(x) for x in samples]
            result = settle_round(pool, await evolver.run_round(pool, 1), make_deduper(self.config, seeds))
            failed += [r for r in result.rejected if r.kind == "failed"]
            lost += [r for r in result.rejected if r.kind != "failed"]
            for rec in result.kept:
                base = self.seed_words.get(origin[rec.seed_id])
                if base:
                    ratios.append(min(word_count(rec.output) / base, COMPLEXITY_CAP))
        attempts = len(seeds) * self.opts.dev_samples - len(failed)
        kinds = Counter(failure_kind(r) for r in lost)
        return Evaluation(
            attempts=attempts,
            failures=len(lost),
            failure_rate=round(len(lost) / attempts, 6) if attempts else 1.0,
            by_rule=dict(sorted(Counter(r.rule for r in lost).items())),
            calls_failed=len(failed),
            by_kind={k: kinds[k] for k in FAILURE_KINDS},
            rate_by_kind={k: round(kinds[k] / attempts, 6) if attempts else 0.0 for k in FAILURE_KINDS},
            complexity=round(sum(ratios) / len(ratios), 6) if ratios else None,
            complexity_items=len(ratios),
        )

    async def trajectories(self, profile: Profile, batch: list[Seed]) -> str:
        """The mini-batch evolved for a few rounds with ``profile``, as text for the optimizer."""
        evolver = Evolver(self.frozen, profile, self.chat, self.models, self.tally)
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

    async def ask(self, prompt: str, sample: str) -> str | None:
        """The optimizer's answer; one cut at ``max_tokens`` is asked again with twice the room (as an answer is),
        and None if it is cut again: half an analysis or half a method is not one."""
        sampling = self.config.sampling
        c = await self.caller.call("optimize", self.optimizer_model, prompt, sampling, sample)
        if c.finish_reason == "length" and sampling.max_tokens < RETRY_MAX_TOKENS:
            sampling = sampling.with_more_room(RETRY_MAX_TOKENS)
            c = await self.caller.call("optimize", self.optimizer_model, prompt, sampling, f"{sample}:longer")
        return None if c.finish_reason == "length" else c.text

    async def candidate(self, step: int, i: int, method: str, trajectories: str) -> MethodCandidate:
        return await self.phase(f"candidate-step-{step}-{i}", lambda: self._candidate(step, i, method, trajectories))

    async def _candidate(self, step: int, i: int, method: str, trajectories: str) -> MethodCandidate:
        """Candidate ``i``: its own analysis of the trajectories, a method written from it, that method measured."""
        cut = f"was cut at max_tokens, also when asked again with up to {RETRY_MAX_TOKENS} tokens"
        try:
            analysis = await self.ask(
                self.analyze.render(method=method, trajectories=trajectories), f"optimize:step{step}:analyze:{i}"
            )
            if analysis is None:
                return MethodCandidate(index=i, method="", valid=False, reason=f"the optimizer's analysis {cut}")
            prompt = self.propose.render(
                method=method,
                analysis=analysis,
                variant=str(i),
                count=str(self.opts.candidates),
                marker=self.op.extract or "",
            )
            answer = await self.ask(prompt, f"optimize:step{step}:propose:{i}")
        except BackendError as exc:
            if exc.fatal:
                raise
            return MethodCandidate(index=i, method="", valid=False, reason=f"the optimizer's call failed: {exc}")
        if answer is None:
            return MethodCandidate(index=i, method="", valid=False, analysis=analysis, reason=f"the new method {cut}")
        text = candidate_text(answer)
        if text is None:
            return MethodCandidate(
                index=i,
                method="",
                valid=False,
                analysis=analysis,
                reason=f"the optimizer wrote no '{NEW_METHOD}' section",
            )
        try:
            profile = with_method(self.profile, self.op, text)
        except TemplateError as exc:
            return MethodCandidate(index=i, method=text, valid=False, analysis=analysis, reason=str(exc))
        return MethodCandidate(
            index=i, method=text, valid=True, analysis=analysis, evaluation=await self.evaluate(profile)
        )

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
        await self.phase("answer-dev-seeds", partial(self.answer_seeds, self.dev))
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
                evaluation=await self.phase(
                    f"evaluate-baseline-{base.name}", lambda: self.evaluate(base, frozen=False)
                ),
            )
        report = OptimizeReport(
            status="running",
            reason="",
            profile=self.profile.name,
            operation=self.op.name,
            evolve_model=self.models.evolve,
            optimizer_model=self.optimizer_model,
            dev=tuple(s.id for s in self.dev),
            dev_samples=self.opts.dev_samples,
            leak_phrases=self.leak_phrases,
            start=start,
            baseline=baseline,
            best_method=start_text,
            best_failure_rate=start.evaluation.failure_rate,
            best_complexity=start.evaluation.complexity,
        )
        save(self.books(report))
        reason = f"ran all {self.opts.steps} steps"
        # the complexity floor: the most complex method kept so far, less the tolerance (answers vary from call to call)
        peak = start.evaluation.complexity
        flat = 0
        for step in range(1, self.opts.steps + 1):
            best_profile = with_method(self.profile, self.op, report.best_method)
            batch = self.minibatch(step)
            traj = await self.phase(f"trajectories-step-{step}", partial(self.trajectories, best_profile, batch))
            cands = await asyncio.gather(
                *(self.candidate(step, i, report.best_method, traj) for i in range(1, self.opts.candidates + 1))
            )
            floor = None if peak is None else round(peak * (1 - self.opts.complexity_tolerance), 6)
            cands, why, kept = judge_candidates(list(cands), report.best_failure_rate, floor)
            improved = kept is not None
            if kept is not None:
                assert kept.evaluation is not None
                best_method, best_rate, best_complexity = (
                    kept.method,
                    kept.evaluation.failure_rate,
                    kept.evaluation.complexity,
                )
                if best_complexity is not None:
                    peak = best_complexity if peak is None else max(peak, best_complexity)
                flat = 0
            else:
                best_method, best_rate, best_complexity = (
                    report.best_method,
                    report.best_failure_rate,
                    report.best_complexity,
                )
                flat += 1
            report = report.model_copy(
                update={
                    "steps": (
                        *report.steps,
                        Step(
                            step=step,
                            batch=tuple(s.id for s in batch),
                            candidates=tuple(cands),
                            best_failure_rate=best_rate,
                            best_complexity=best_complexity,
                            improved=improved,
                            why=why,
                            min_complexity=floor,
                        ),
                    ),
                    "best_method": best_method,
                    "best_failure_rate": best_rate,
                    "best_complexity": best_complexity,
                }
            )
            save(self.books(report))
            if flat >= self.opts.patience:
                reason = (
                    f"step {step}: no candidate beat the failure rate {best_rate:.3f} "
                    f"for {flat} step{'s' if flat > 1 else ''} in a row (patience {self.opts.patience})"
                )
                break
        return self.books(report, status="complete", reason=reason)


def judge_candidates(
    cands: list[MethodCandidate], best_rate: float, floor: float | None
) -> tuple[list[MethodCandidate], str, MethodCandidate | None]:
    """The step's decision: each candidate with why it was kept or not, why the step ended as it did, and the winner.

    A candidate is in the running if its complexity reached ``floor`` (a method that changes little fails little,
    and must not win for it); of those the lowest failure rate wins (the higher complexity, then the earlier one,
    on a tie), if it beats ``best_rate``: a step never loses ground."""

    def complexity(c: MethodCandidate) -> float:
        assert c.evaluation is not None
        return c.evaluation.complexity if c.evaluation.complexity is not None else float("-inf")

    def rate(c: MethodCandidate) -> float:
        assert c.evaluation is not None
        return c.evaluation.failure_rate

    rated = [c for c in cands if c.valid and c.evaluation is not None]
    running = [c for c in rated if floor is None or complexity(c) >= floor]
    best = min(running, key=lambda c: (rate(c), -complexity(c), c.index), default=None)
    winner = best if best is not None and rate(best) < best_rate else None
    out = []
    for c in cands:
        if not c.valid or c.evaluation is None:
            why = f"invalid: {c.reason}"
        elif c not in running:
            shown = "none (no kept evolution)" if c.evaluation.complexity is None else f"{complexity(c):.3f}"
            why = (
                f"its complexity {shown} is below the floor {floor:.3f} (the most complex method kept so far, "
                f"less the tolerance), whatever its failure rate ({rate(c):.3f})"
            )
        elif c is winner:
            why = (
                f"kept: the lowest failure rate of the candidates whose complexity did not fall "
                f"({rate(c):.3f} < {best_rate:.3f}, complexity {complexity(c):.3f})"
            )
        elif rate(c) >= best_rate:
            why = f"its failure rate {rate(c):.3f} does not beat the current method's {best_rate:.3f}"
        else:
            assert best is not None
            if rate(best) < rate(c):
                why = f"candidate {best.index} failed less ({rate(best):.3f} against {rate(c):.3f})"
            else:
                why = (
                    f"candidate {best.index} failed as little ({rate(c):.3f}) and comes first "
                    f"({'more complex' if complexity(best) > complexity(c) else 'as complex, earlier'})"
                )
        out.append(c.model_copy(update={"why": why, "kept": c is winner}))
    kept = next((c for c in out if c.kept), None)
    if kept is not None:
        step_why = f"candidate {kept.index} {kept.why.removeprefix('kept: ')}"
    elif not rated:
        step_why = "no candidate was a valid method"
    elif not running:
        step_why = f"every valid candidate's complexity fell below the floor {floor:.3f}"
    else:
        step_why = f"no candidate whose complexity did not fall beat the failure rate {best_rate:.3f}"
    return out, step_why, kept


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
