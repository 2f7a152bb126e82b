"""The Evol-Instruct method over a pool of instructions: evolve, eliminate, answer, dedup, round after round.

Each item moves through evolve → checks → judge → respond → checks on its own, so one item's answer is
being written while another is still evolving; rounds are the only barrier, because the next round's pool
depends on this round's survivors. Operation choices come from an RNG seeded per (run seed, seed id, round),
so the dataset does not depend on the order in which answers arrive.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Sequence

from evol.config import RunConfig
from evol.errors import BackendError, Interrupted
from evol.evolve.answers import AnswerStage
from evol.evolve.concurrency import bounded_map
from evol.llm.client import ChatModel
from evol.llm.usage import Tally
from evol.models import (
    Candidate,
    Completion,
    JudgeAnswer,
    JudgeVerdict,
    Lineage,
    Models,
    Node,
    Outcome,
    Record,
    Rejection,
    RejectionKind,
    Seed,
    Usage,
)
from evol.pricing import Budget
from evol.prompts import Profile
from evol.quality.judge_reader import parse_judgement
from evol.rules import evolution
from evol.rules.judgement import check_judgement
from evol.rules.response import check_response
from evol.rules.wrappers import unwrap

log = logging.getLogger("evol")

#: the most tokens an answer cut at ``max_tokens`` is asked again with (twice ``max_tokens``, at most this)
RETRY_MAX_TOKENS = 8192


def candidate_id(seed_id: str, round_no: int) -> str:
    return f"{seed_id}.r{round_no}"


class Evolver:
    """One round of the method for one pool entry, and batches of them with bounded concurrency."""

    def __init__(
        self,
        config: RunConfig,
        profile: Profile,
        chat: ChatModel,
        models: Models,
        tally: Tally | None = None,
        stop: threading.Event | None = None,
    ):
        self.config = config
        self.budget = Budget(config.budget_usd, config.price_table())
        self.profile = profile
        self.chat = chat
        self.models = models
        self.tally = tally or Tally()
        self.leak_phrases = sorted({*config.leak_phrases, *profile.leak_markers})
        self.stop = stop  # set from another thread (a Ctrl-C there): no new call starts
        # several candidates or answer evolution; None: one plain answer, exactly as before candidates existed
        self.answer_stage = AnswerStage(config, self.call, models) if config.ranks_answers else None

    async def call(self, stage: str, model: str, prompt: str, sampling, sample: str) -> Completion:
        if self.stop is not None and self.stop.is_set():
            raise Interrupted("Interrupted; the calls in flight finished and are kept.")
        self.budget.check(self.tally.by_model)
        try:
            c = await self.chat.complete(
                [{"role": "user", "content": prompt}], model=model, sampling=sampling, sample=sample
            )
        except BackendError:
            self.tally.errors[stage] += 1
            raise
        self.tally.add(stage, model, c)
        return c

    def judged_by(self, verdict: JudgeVerdict | None, candidates: Sequence[Candidate] = ()) -> str | None:
        """The model that judged an item (the equality judge, or the ranking judge of its candidates); None when
        no judge answered: every row records it, so a judge that also wrote the rows can be told apart."""
        return self.models.judge if verdict is not None or any(c.ranking for c in candidates) else None

    async def step(self, node: Node, round_no: int) -> Outcome:
        """Evolve ``node`` once and decide: a Record (kept, before dedup) or a Rejection with its rule."""
        cfg, on = self.config, self.config.rule_on
        rng = random.Random(f"{cfg.seed}:{node.seed_id}:{round_no}")
        op = self.profile.choose(rng, round_no)
        cid = candidate_id(node.seed_id, round_no)
        usage: dict[str, Usage] = {}
        stripped: tuple[str, ...] = ()  # the chatter taken off the rewrite, recorded with the outcome
        judged: JudgeVerdict | None = None

        candidate = Lineage(
            id=cid,
            seed_id=node.seed_id,
            seed_index=node.seed_index,
            parent_id=node.id,
            round=round_no,
            operation=op.name,
        )
        lineage = candidate.lineage()

        def reject(
            kind: RejectionKind, rule: str, detail: str, stage: str, instruction=None, output=None, **extra
        ) -> Rejection:
            return candidate.rejected(
                kind,
                rule,
                detail,
                stage,
                instruction=instruction,
                output=output,
                usage=usage,
                stripped=stripped,
                judge=judged,
                judge_model=self.judged_by(judged, extra.get("candidates", ())),
                **extra,
            )

        stage = "evolve"
        try:
            prompt = op.render(node.instruction, rng)
            evo = await self.call(stage, self.models.evolve, prompt, cfg.sampling, f"{cid}:evolve")
            usage[stage] = evo.usage
            unwrapped = unwrap(evo.text, self.profile.labels, self.profile.nouns, node.instruction)
            if op.extract:  # a structured answer (plan, rewrite, review, final): only its final section counts
                final = evolution.extract_final(unwrapped.text, op.extract) or evolution.extract_final(
                    evo.text, op.extract
                )
                verdict = evolution.check_final(final, evo.finish_reason, op.extract, on)
                if not verdict.keep:
                    return reject("eliminated", verdict.named_rule, verdict.detail, stage, evo.text.strip() or None)
                if final is not None:
                    inner = unwrap(final, self.profile.labels, self.profile.nouns)
                    unwrapped = inner.model_copy(update={"stripped": (*unwrapped.stripped, *inner.stripped)})
            text, stripped = unwrapped.text, unwrapped.stripped
            verdict = evolution.check_evolution(
                text,
                evo.finish_reason,
                node.instruction,
                self.leak_phrases,
                on,
                unwrapped,
                cfg.max_instruction_chars,
                prompt,
            )
            if not verdict.keep:
                return reject("eliminated", verdict.named_rule, verdict.detail, stage, text)

            if on("no_information_gain"):
                stage = "judge"
                judged = await self.judge(node.instruction, text, cid, usage)
                verdict = check_judgement(judged.judgement, on, keep_unclear=cfg.keep_judge_unclear)
                if not verdict.keep:
                    return reject("eliminated", verdict.named_rule, verdict.detail, stage, text)

            stage = "respond"
            if self.answer_stage is not None:  # several candidates, ranked, perhaps evolved
                got = await self.answer_stage.run(text, self.profile.response_prompt(text), cid, usage)
                if got.best is None:
                    return reject(got.kind, got.rule, got.detail, stage, text, got.output, candidates=got.candidates)
                return Record(
                    **lineage,
                    instruction=text,
                    output=got.best.text,
                    model=self.models.evolve,
                    response_model=got.best.model,
                    usage=usage,
                    stripped=stripped,
                    judge=judged,
                    judge_model=self.judged_by(judged, got.candidates),
                    candidates=got.candidates,
                )
            r, cut = await self.respond(self.profile.response_prompt(text), f"{cid}:respond", usage)
            verdict = check_response(r.text, r.finish_reason, cfg.sorry_max_words, on, instruction=text)
            if not verdict.keep:
                return reject("eliminated", verdict.named_rule, verdict.detail, stage, text, r.text, cut_answers=cut)
        except BackendError as exc:
            if exc.fatal:
                raise
            return reject("failed", "backend_error", str(exc), stage)
        return Record(
            **lineage,
            instruction=text,
            output=r.text.strip(),
            model=self.models.evolve,
            response_model=self.models.respond,
            usage=usage,
            stripped=stripped,
            judge=judged,
            judge_model=self.judged_by(judged),
            cut_answers=cut,
        )

    async def respond(self, prompt: str, sample: str, usage: dict[str, Usage]) -> tuple[Completion, tuple[str, ...]]:
        """The answer to ``prompt``, asked once more with twice the room (up to RETRY_MAX_TOKENS) when it was cut at
        ``max_tokens``: a hard instruction's good answer is long, and eliminating it would bias the data toward short
        tasks. Returns the answer that counts and the cut-off one it replaced; both calls' tokens go to ``usage``."""
        sampling = self.config.response_sampling
        r = await self.call("respond", self.models.respond, prompt, sampling, sample)
        usage["respond"] = r.usage
        if r.finish_reason != "length" or not self.config.rule_on("truncated_response"):
            return r, ()
        if sampling.max_tokens >= RETRY_MAX_TOKENS:
            return r, ()
        longer = sampling.with_more_room(RETRY_MAX_TOKENS)
        again = await self.call("respond", self.models.respond, prompt, longer, f"{sample}:longer")
        usage["respond"] = usage["respond"] + again.usage
        return again, (r.text,)

    async def judge(self, parent: str, text: str, cid: str, usage: dict[str, Usage]) -> JudgeVerdict:
        """Ask the equality judge whether ``text`` gained anything over ``parent``; an answer that reads as no
        verdict is asked once more, under another sample id so the call cache does not give the same answer back.
        Both calls' tokens go into ``usage["judge"]``."""
        prompt = self.profile.judge.render(first=parent, second=text)
        sampling = self.config.judge_sampling
        answers: list[JudgeAnswer] = []
        for sample in (f"{cid}:judge", f"{cid}:judge:retry"):
            j = await self.call("judge", self.models.judge, prompt, sampling, sample)
            usage["judge"] = usage["judge"] + j.usage if "judge" in usage else j.usage
            answers.append(JudgeAnswer(text=j.text, finish_reason=j.finish_reason, judgement=parse_judgement(j.text)))
            if answers[-1].judgement != "unclear":
                break
            if j.finish_reason == "length":  # a reasoning model cut off mid-thought: the retry gets twice the room
                sampling = sampling.with_more_room()
        return JudgeVerdict(judgement=answers[-1].judgement, answers=tuple(answers))

    async def answer_seed(self, seed: Seed) -> Outcome:
        """A seed for the dataset: its own output if it has one, else the responder's (checked like any answer)."""
        of_seed = Lineage.of_seed(seed)
        lineage = of_seed.lineage()
        if seed.output and seed.output.strip():
            return Record(**lineage, instruction=seed.instruction, output=seed.output.strip())
        if self.answer_stage is not None:
            return await self._answer_seed_candidates(seed, self.answer_stage)
        usage: dict[str, Usage] = {}
        try:
            r, cut = await self.respond(self.profile.response_prompt(seed.instruction), f"{seed.id}:respond", usage)
        except BackendError as exc:
            if exc.fatal:
                raise
            return of_seed.rejected("failed", "backend_error", str(exc), "respond", instruction=seed.instruction)
        verdict = check_response(
            r.text, r.finish_reason, self.config.sorry_max_words, self.config.rule_on, instruction=seed.instruction
        )
        if not verdict.keep:
            return of_seed.rejected(
                "eliminated",
                verdict.named_rule,
                verdict.detail,
                "respond",
                instruction=seed.instruction,
                output=r.text,
                usage=usage,
                cut_answers=cut,
            )
        return Record(
            **lineage,
            instruction=seed.instruction,
            output=r.text.strip(),
            response_model=self.models.respond,
            usage=usage,
            cut_answers=cut,
        )

    async def _answer_seed_candidates(self, seed: Seed, answer_stage: AnswerStage) -> Outcome:
        usage: dict[str, Usage] = {}
        got = await answer_stage.run(seed.instruction, self.profile.response_prompt(seed.instruction), seed.id, usage)
        of_seed = Lineage.of_seed(seed)
        if got.best is None:
            return of_seed.rejected(
                got.kind,
                got.rule,
                got.detail,
                "respond",
                instruction=seed.instruction,
                output=got.output,
                usage=usage,
                judge_model=self.judged_by(None, got.candidates),
                candidates=got.candidates,
            )
        return Record(
            **of_seed.lineage(),
            instruction=seed.instruction,
            output=got.best.text,
            response_model=got.best.model,
            usage=usage,
            judge_model=self.judged_by(None, got.candidates),
            candidates=got.candidates,
        )

    async def run_round(
        self,
        pool: Sequence[Node],
        round_no: int,
        on_done: Callable[[Outcome], None] | None = None,
        collect: bool = True,
    ) -> list[Outcome]:
        return await bounded_map(lambda n: self.step(n, round_no), pool, self.workers, on_done, collect)

    @property
    def workers(self) -> int:
        return self.config.workers
