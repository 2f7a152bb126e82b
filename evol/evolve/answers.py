"""The answer stage beyond one plain answer: several candidates, answer evolution, and the ranking judge.

It runs inside ``Evolver.step`` (and ``answer_seed``), so both engines, ``--batch`` and resume get it with no
plumbing of their own: every call has a deterministic sample id of its own (``<id>:respond:2``,
``<id>:evolve_answer:1``, ``<id>:rank:e1``), so a resumed run pays for none of them twice and gets the same
answers. The price of doing it per item: an instruction that settling later finds to be a duplicate has had
all its candidates and rankings paid for.

Ranking is pointwise, a 1-10 score with a reason per candidate: N candidates cost N judge calls, each cached
on its own, and an evolved answer needs one new score instead of a fresh comparison with every other.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from evol.config import RETRY_MAX_TOKENS, RunConfig, Sampling
from evol.errors import BackendError, ConfigError
from evol.models import Candidate, Completion, History, Models, RejectionKind, Usage
from evol.prompts import Prompt, default_prompts_dir
from evol.quality.score_reader import parse_rank
from evol.rules.judgement import check_ranking
from evol.rules.response import check_response
from evol.rules.wrappers import strip_heading

FOLDER = "answers"  # under the prompts folder: rank.txt and one template per answer-evolution direction
SLOTS = frozenset({"instruction", "answer"})
# what an improved answer may be introduced as ("**Improved answer:**", "Here's a more detailed response:")
_LABELS = ("improved answer", "revised answer", "better answer", "rewritten answer", "improved response")
_NOUNS = ("answer", "response", "explanation", "reply")


@dataclass(frozen=True)
class AnswerPrompts:
    rank: Prompt
    directions: tuple[Prompt, ...]  # each named by its file: helpful, relevant, deeper, creative, detailed

    def hashes(self) -> dict[str, str]:
        return {f"{FOLDER}/{p.name}": p.sha256 for p in (self.rank, *self.directions)}


def load_answer_prompts(prompts_dir: Path | None = None) -> AnswerPrompts:
    """``answers/`` of ``prompts_dir`` (the shipped one when that folder has none): rank.txt and the directions."""
    folder = Path(prompts_dir) / FOLDER if prompts_dir else None
    if folder is None or not folder.is_dir():
        folder = default_prompts_dir() / FOLDER
    rank = Prompt.load(folder / "rank.txt", SLOTS)
    directions = tuple(Prompt.load(f, SLOTS) for f in sorted(folder.glob("*.txt")) if f.name != "rank.txt")
    if not directions:
        raise ConfigError(f"{folder} has no answer-evolution template besides rank.txt; add one such as helpful.txt.")
    return AnswerPrompts(rank=rank, directions=directions)


@dataclass(frozen=True)
class Answered:
    """What the answer stage decided: the best candidate (None: the instruction is rejected under ``rule``)."""

    candidates: tuple[Candidate, ...]
    best: Candidate | None = None
    kind: RejectionKind = "eliminated"
    rule: str = ""  # set whenever best is None
    detail: str = ""

    @property
    def output(self) -> str | None:
        """The text a rejection shows: the first candidate's."""
        return self.candidates[0].text if self.candidates else None


class Call(Protocol):
    """One LLM call of a stage, booked and budgeted: the evolver's ``call``."""

    def __call__(
        self, stage: str, model: str, prompt: str, sampling: Sampling, sample: str, history: History = ()
    ) -> Awaitable[Completion]:
        pass


class AnswerStage:
    """Candidates, ranking and answer evolution, through the calls of the evolver that owns it."""

    def __init__(self, config: RunConfig, call: Call, models: Models):
        self.config = config
        self.call = call
        self.judge_model = models.judge
        self.prompts = load_answer_prompts(config.prompts_dir)
        self.responders = list(config.response_models) or [models.respond]

    async def run(
        self, instruction: str, prompt: str, cid: str, usage: dict[str, Usage], history: History = ()
    ) -> Answered:
        """Answer ``instruction`` (sent as ``prompt``, after a conversation's ``history``) with every candidate,
        rank them, evolve the best."""
        cfg, on = self.config, self.config.rule_on
        n = cfg.candidate_count
        several = len(self.responders) > 1
        firsts = await asyncio.gather(
            *(self._answer(instruction, prompt, cid, i, several, usage, history) for i in range(n))
        )
        passed = [c for c in firsts if c.rule is None]
        if not passed:
            rules = Counter(c.rule for c in firsts)
            kind: RejectionKind = "failed" if set(rules) == {"backend_error"} else "eliminated"
            first = next(c for c in firsts if c.rule != "backend_error") if kind == "eliminated" else firsts[0]
            return Answered(
                tuple(firsts),
                kind=kind,
                rule=first.rule or "",  # every first candidate failed under a rule
                detail=f"none of the {n} candidate answers passed: "
                + ", ".join(f"{r} {k}" for r, k in rules.most_common()),
            )
        if len(passed) == 1 and cfg.evolve_answers == 0:  # nothing to choose between: no judge call
            return self._finish(firsts, passed[0])
        ranked = {
            c.key: c for c in await asyncio.gather(*(self._rank(instruction, c, cid, usage, history) for c in passed))
        }
        cands = [ranked.get(c.key, c) for c in firsts]
        scored = [(c.score, c) for c in cands if c.score is not None]
        verdict = check_ranking(len(scored), on)
        if not verdict.keep:
            return Answered(tuple(cands), rule=verdict.named_rule, detail=verdict.detail)
        if not scored:  # rank_unclear switched off: the first answer that passed, unranked, and no evolution
            return self._finish(cands, ranked[passed[0].key])
        best_score, best = max(scored, key=lambda s: s[0])  # max keeps the first of equals: the earliest candidate
        rng = random.Random(f"{cfg.seed}:{cid}:answers")
        for k in range(1, cfg.evolve_answers + 1):
            direction = rng.choice(self.prompts.directions)
            evolved = await self._evolve(instruction, best, direction, cid, k, usage, history)
            if evolved.rule is None:
                evolved = await self._rank(instruction, evolved, cid, usage, history)
            cands.append(evolved)
            # kept only when the judge prefers it: a strictly higher score than the answer it would replace
            if evolved.score is not None and evolved.score > best_score:
                best, best_score = evolved, evolved.score
        return self._finish(cands, best)

    @staticmethod
    def _finish(cands: list[Candidate], best: Candidate) -> Answered:
        marked = tuple(c.model_copy(update={"best": True}) if c.key == best.key else c for c in cands)
        return Answered(marked, best=next(c for c in marked if c.best))

    async def _answer(
        self,
        instruction: str,
        prompt: str,
        cid: str,
        i: int,
        several: bool,
        usage: dict[str, Usage],
        history: History = (),
    ) -> Candidate:
        model = self.responders[i % len(self.responders)]
        # the first candidate's sample id is the one plain answer's: the same call as a run without candidates
        sample = f"{cid}:respond" if i == 0 else f"{cid}:respond:{i}"
        origin = "model" if several else "sample"
        return await self._call(
            "respond",
            model,
            prompt,
            self.config.response_sampling,
            sample,
            usage,
            key=str(i),
            origin=origin,
            instruction=instruction,
            history=history,
        )

    async def _evolve(
        self,
        instruction: str,
        best: Candidate,
        direction: Prompt,
        cid: str,
        k: int,
        usage: dict[str, Usage],
        history: History = (),
    ) -> Candidate:
        prompt = direction.render(instruction=instruction, answer=best.text)
        return await self._call(
            "evolve_answer",
            best.model,
            prompt,
            self.config.response_sampling,
            f"{cid}:evolve_answer:{k}",
            usage,
            key=f"e{k}",
            origin=f"evolved:{direction.name}",
            instruction=instruction,
            unwrap=True,
            history=history,
        )

    async def _call(
        self,
        stage: str,
        model: str,
        prompt: str,
        sampling,
        sample: str,
        usage: dict[str, Usage],
        *,
        key: str,
        origin: str,
        instruction: str,
        unwrap: bool = False,
        again: bool = True,
        history: History = (),
    ) -> Candidate:
        """One answer call and the response rules on it; a call that fails for good is a candidate dropped as
        backend_error, not the end of the instruction (a fatal error, a stop or the budget still end the run).
        An answer cut at ``max_tokens`` is asked once more with twice the room, as a single answer is
        (``Evolver.respond``, whose sample id the first candidate's retry shares)."""
        try:
            c = await self.call(stage, model, prompt, sampling, sample, history)
        except BackendError as exc:
            if exc.fatal:
                raise
            return Candidate(key=key, text="", model=model, origin=origin, rule="backend_error", reason=str(exc))
        usage[stage] = usage[stage] + c.usage if stage in usage else c.usage
        text = strip_heading(c.text, _LABELS, _NOUNS)[0] if unwrap else c.text.strip()
        cut = c.finish_reason == "length" and self.config.rule_on("truncated_response")
        if again and cut and sampling.max_tokens < RETRY_MAX_TOKENS:
            longer = sampling.with_more_room(RETRY_MAX_TOKENS)
            retried = await self._call(
                stage,
                model,
                prompt,
                longer,
                f"{sample}:longer",
                usage,
                key=key,
                origin=origin,
                instruction=instruction,
                unwrap=unwrap,
                again=False,
                history=history,
            )
            if retried.rule != "backend_error":  # a failed retry leaves the cut answer to its rule
                return retried.model_copy(update={"cut_answers": (text,)})
        verdict = check_response(
            text,
            c.finish_reason,
            self.config.sorry_max_words,
            self.config.rule_on,
            instruction=instruction,
            earlier=[t.content for t in history],
        )
        return Candidate(
            key=key,
            text=text,
            model=model,
            origin=origin,
            finish_reason=c.finish_reason,
            rule=verdict.rule,
            reason=verdict.detail,
        )

    async def _rank(
        self, instruction: str, cand: Candidate, cid: str, usage: dict[str, Usage], history: History = ()
    ) -> Candidate:
        """Score ``cand`` 1-10; an answer with no readable score is asked once more under another sample id
        (with twice the room when it was cut off), and two unreadable answers leave it ``unclear``."""
        prompt = self.prompts.rank.render(instruction=instruction, answer=cand.text)
        sampling = self.config.judge_sampling
        raw: list[str] = []
        score, reason = None, ""
        for sample in (f"{cid}:rank:{cand.key}", f"{cid}:rank:{cand.key}:retry"):
            try:
                j = await self.call("rank", self.judge_model, prompt, sampling, sample, history)
            except BackendError as exc:
                if exc.fatal:
                    raise
                return cand.model_copy(
                    update={
                        "ranking": "unclear",
                        "reason": f"the ranking call failed: {exc}",
                        "rank_answers": tuple(raw),
                    }
                )
            usage["rank"] = usage["rank"] + j.usage if "rank" in usage else j.usage
            raw.append(j.text)
            score, reason = parse_rank(j.text)
            if score is not None:
                break
            if j.finish_reason == "length":
                sampling = sampling.with_more_room()
        return cand.model_copy(
            update={
                "score": score,
                "reason": reason,
                "rank_answers": tuple(raw),
                "ranking": "scored" if score is not None else "unclear",
            }
        )
