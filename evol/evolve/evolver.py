"""The Evol-Instruct method over a pool of instructions: evolve, eliminate, answer, dedup, round after round.

Each item moves through evolve → checks → judge → respond → checks on its own, so one item's answer is
being written while another is still evolving; rounds are the only barrier, because the next round's pool
depends on this round's survivors. Operation choices come from an RNG seeded per (run seed, seed id, round),
so the dataset does not depend on the order in which answers arrive.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from evol.config import RETRY_MAX_TOKENS, RunConfig
from evol.dedup.index import Deduper
from evol.errors import BackendError, Interrupted
from evol.evolve.answers import AnswerStage
from evol.evolve.concurrency import bounded_map
from evol.llm.client import ChatModel
from evol.llm.usage import Tally
from evol.models import (
    Candidate,
    Completion,
    History,
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
    Turn,
    Usage,
    user_turns,
)
from evol.models import asked as dedup_text
from evol.pricing import Budget
from evol.prompts import Profile, choice_rng
from evol.quality.judge_reader import parse_follow_up, parse_judgement
from evol.rules import conversation, evolution
from evol.rules.judgement import check_judgement
from evol.rules.response import check_response
from evol.rules.wrappers import unwrap

log = logging.getLogger("evol")


def candidate_id(seed_id: str, round_no: int, line: str = "") -> str:
    """The id of ``seed_id``'s evolution in round ``round_no`` on ``line`` (its call-cache samples start with it):
    ``seed.r2``, or ``seed.upward.r2`` on a profile's line, so both lines of one seed stay apart."""
    return f"{seed_id}.{line}.r{round_no}" if line else f"{seed_id}.r{round_no}"


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
        kept: Deduper | None = None,
    ):
        self.config = config
        self.budget = Budget(config.budget_usd, config.price_table())
        self.profile = profile
        self.chat = chat
        self.models = models
        self.tally = tally or Tally()
        self.leak_phrases = sorted({*config.leak_phrases, *profile.leak_markers})
        self.stop = stop  # set from another thread (a Ctrl-C there): no new call starts
        # the run's dedup index: an evolution that already duplicates a text kept before its round began is not
        # answered (settling, in pool order, would reject it whatever its answer); None where the index is
        # elsewhere (Dask)
        self.kept = kept
        # several candidates or answer evolution; None: one plain answer, exactly as before candidates existed
        self.answer_stage = AnswerStage(config, self.call, models) if config.ranks_answers else None

    async def call(
        self, stage: str, model: str, prompt: str, sampling, sample: str, history: History = ()
    ) -> Completion:
        """One call of ``stage``: ``prompt`` as the user's message, after the conversation's ``history`` (an answer
        to a conversation's turn is written with every turn before it)."""
        if self.stop is not None and self.stop.is_set():
            raise Interrupted("Interrupted; the calls in flight finished and are kept.")
        self.budget.check(self.tally.by_model)
        messages = [{"role": t.role, "content": t.content} for t in history]
        messages.append({"role": "user", "content": prompt})
        try:
            c = await self.chat.complete(messages, model=model, sampling=sampling, sample=sample)
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
        rng = choice_rng(cfg.seed, node.seed_id, round_no, node.line)
        chat = self.profile.conversation
        # a turn may be added after an answered one while the conversation is shorter than --turns
        can_follow = chat is not None and node.output is not None and user_turns(node.history) + 1 < cfg.turns
        op = self.profile.choose(rng, round_no, follow_up=can_follow, line=node.line)
        cid = candidate_id(node.seed_id, round_no, node.line)
        # the turns before the evolution: the node's, and with a follow-up its own turn and answer too
        history: History = node.history
        if op.follow_up:
            history = (
                *node.history,
                Turn(role="user", content=node.instruction),
                Turn(role="assistant", content=node.output or ""),
            )
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
            line=node.line,
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
                history=history,
                judge_model=self.judged_by(judged, extra.get("candidates", ())),
                **extra,
            )

        stage = "evolve"
        try:
            prompt = op.render(node.instruction, rng, node.output)
            # the turns so far go before the evolving prompt; the rules read only the prompt's own words
            sent = chat.show(node.history) + prompt if chat is not None and node.history else prompt
            evo = await self.call(stage, self.models.evolve, sent, cfg.sampling, f"{cid}:evolve")
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
            # a turn of a conversation may refer to what the turns before it hold ("the code above"): no lost_input
            turn_on = (lambda rule: rule != "lost_input" and on(rule)) if history else on
            verdict = evolution.check_evolution(
                text,
                evo.finish_reason,
                node.instruction,
                self.leak_phrases,
                turn_on,
                unwrapped,
                cfg.max_instruction_chars,
                prompt,
            )
            if op.follow_up and on("repeated_turn") and (verdict.keep or verdict.rule == "identical_to_parent"):
                # a follow-up that asks its parent's turn again repeats a turn: the conversation's rule names it
                repeated = conversation.repeated_turn(text, (t.content for t in history if t.role == "user"))
                verdict = verdict if repeated.keep else repeated
            if not verdict.keep:
                return reject("eliminated", verdict.named_rule, verdict.detail, stage, text)

            if op.follow_up and chat is not None and on("ignored_answer"):
                stage = "judge"
                asked = chat.follow_up_judge.render(answer=node.output or "", follow_up=text)
                judged = await self.judge(chat.show(history[:-1]) + asked, cid, usage, parse_follow_up)
                verdict = conversation.check_follow_up(judged.judgement, cfg.keep_judge_unclear, on)
                if not verdict.keep:
                    return reject("eliminated", verdict.named_rule, verdict.detail, stage, text)
            elif not op.follow_up and on("no_information_gain"):
                stage = "judge"
                asked = self.profile.judge.render(first=node.instruction, second=text)
                shown = chat.show(history) + asked if chat is not None and history else asked
                judged = await self.judge(shown, cid, usage)
                verdict = check_judgement(judged.judgement, on, keep_unclear=cfg.keep_judge_unclear)
                if not verdict.keep:
                    return reject("eliminated", verdict.named_rule, verdict.detail, stage, text)

            kept = self.kept
            if kept is not None and (match := kept.check_settled(dedup_text(history, text), node.seed_id)) is not None:
                self.tally.count_saved(self.answer_calls())
                detail = f"duplicates {match.duplicate_of} (score {match.score:.2f})"
                # settling checks it again in pool order, as it does every evolution, and names what it repeats then
                return reject(
                    "duplicate", match.rule, detail, "dedup", text, duplicate_of=match.duplicate_of, score=match.score
                )

            stage = "respond"
            if self.answer_stage is not None:  # several candidates, ranked, perhaps evolved
                got = await self.answer_stage.run(text, self.profile.response_prompt(text), cid, usage, history)
                if got.best is None:
                    return reject(got.kind, got.rule, got.detail, stage, text, got.output, candidates=got.candidates)
                return Record(
                    **lineage,
                    instruction=text,
                    output=got.best.text,
                    history=history,
                    model=self.models.evolve,
                    response_model=got.best.model,
                    usage=usage,
                    stripped=stripped,
                    judge=judged,
                    judge_model=self.judged_by(judged, got.candidates),
                    candidates=got.candidates,
                )
            r, cut = await self.respond(self.profile.response_prompt(text), f"{cid}:respond", usage, history)
            earlier = [t.content for t in history]
            verdict = check_response(
                r.text, r.finish_reason, cfg.sorry_max_words, on, instruction=text, earlier=earlier
            )
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
            history=history,
            model=self.models.evolve,
            response_model=self.models.respond,
            usage=usage,
            stripped=stripped,
            judge=judged,
            judge_model=self.judged_by(judged),
            cut_answers=cut,
        )

    def answer_calls(self) -> dict[str, int]:
        """The calls an instruction's answers take at the least (no answer asked again): what an evolution found to be a
        duplicate before it was answered saves."""
        cfg = self.config
        if not cfg.ranks_answers:
            return {"respond": 1}
        k = cfg.candidate_count
        out = {"respond": k, "rank": k * (1 + cfg.evolve_answers)}
        if cfg.evolve_answers:
            out["evolve_answer"] = k * cfg.evolve_answers
        return out

    async def respond(
        self, prompt: str, sample: str, usage: dict[str, Usage], history: History = ()
    ) -> tuple[Completion, tuple[str, ...]]:
        """The answer to ``prompt``, asked once more with twice the room (up to RETRY_MAX_TOKENS) when it was cut at
        ``max_tokens``: a hard instruction's good answer is long, and eliminating it would bias the data toward short
        tasks. Returns the answer that counts and the cut-off one it replaced; both calls' tokens go to ``usage``."""
        sampling = self.config.response_sampling
        r = await self.call("respond", self.models.respond, prompt, sampling, sample, history)
        usage["respond"] = r.usage
        if r.finish_reason != "length" or not self.config.rule_on("truncated_response"):
            return r, ()
        if sampling.max_tokens >= RETRY_MAX_TOKENS:
            return r, ()
        longer = sampling.with_more_room(RETRY_MAX_TOKENS)
        again = await self.call("respond", self.models.respond, prompt, longer, f"{sample}:longer", history)
        usage["respond"] = usage["respond"] + again.usage
        return again, (r.text,)

    async def judge(self, prompt: str, cid: str, usage: dict[str, Usage], read=parse_judgement) -> JudgeVerdict:
        """Ask a judge ``prompt`` (the equality judge's, or the follow-up judge's with its ``read``); an answer that
        reads as no verdict is asked once more, under another sample id so the call cache does not give the same
        answer back. Both calls' tokens go into ``usage["judge"]``."""
        sampling = self.config.judge_sampling
        answers: list[JudgeAnswer] = []
        for sample in (f"{cid}:judge", f"{cid}:judge:retry"):
            j = await self.call("judge", self.models.judge, prompt, sampling, sample)
            usage["judge"] = usage["judge"] + j.usage if "judge" in usage else j.usage
            answers.append(JudgeAnswer(text=j.text, finish_reason=j.finish_reason, judgement=read(j.text)))
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
            return Record(**lineage, instruction=seed.instruction, output=seed.output.strip(), history=seed.history)
        if self.answer_stage is not None:
            return await self._answer_seed_candidates(seed, self.answer_stage)
        usage: dict[str, Usage] = {}
        try:
            r, cut = await self.respond(
                self.profile.response_prompt(seed.instruction), f"{seed.id}:respond", usage, seed.history
            )
        except BackendError as exc:
            if exc.fatal:
                raise
            return of_seed.rejected(
                "failed", "backend_error", str(exc), "respond", instruction=seed.instruction, history=seed.history
            )
        verdict = check_response(
            r.text,
            r.finish_reason,
            self.config.sorry_max_words,
            self.config.rule_on,
            instruction=seed.instruction,
            earlier=[t.content for t in seed.history],
        )
        if not verdict.keep:
            return of_seed.rejected(
                "eliminated",
                verdict.named_rule,
                verdict.detail,
                "respond",
                instruction=seed.instruction,
                output=r.text,
                history=seed.history,
                usage=usage,
                cut_answers=cut,
            )
        return Record(
            **lineage,
            instruction=seed.instruction,
            output=r.text.strip(),
            history=seed.history,
            response_model=self.models.respond,
            usage=usage,
            cut_answers=cut,
        )

    async def _answer_seed_candidates(self, seed: Seed, answer_stage: AnswerStage) -> Outcome:
        usage: dict[str, Usage] = {}
        prompt = self.profile.response_prompt(seed.instruction)
        got = await answer_stage.run(seed.instruction, prompt, seed.id, usage, seed.history)
        of_seed = Lineage.of_seed(seed)
        if got.best is None:
            return of_seed.rejected(
                got.kind,
                got.rule,
                got.detail,
                "respond",
                instruction=seed.instruction,
                output=got.output,
                history=seed.history,
                usage=usage,
                judge_model=self.judged_by(None, got.candidates),
                candidates=got.candidates,
            )
        return Record(
            **of_seed.lineage(),
            instruction=seed.instruction,
            output=got.best.text,
            history=seed.history,
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
