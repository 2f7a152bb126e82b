"""Complexity and quality scores: an LLM judge rates each kept row 1-10 on each criterion, into RUN_DIR/scores.jsonl.

Complexity rates the instruction, quality the answer to it. Every call goes through the run's call cache with
a sample id per (row, criterion), so scoring again after a crash or a spent budget pays only for what was never
answered. An answer with no readable score is recorded as an :class:`Unclear` outcome with its reason, never
as a default number.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from evol.errors import BackendError, BudgetExceeded, InputError
from evol.models import Frozen, Usage
from evol.quality.score_reader import Reading, Unclear, read_score
from evol.rundir.folder import SCORES, RunDir

log = logging.getLogger("evol")

Criterion = Literal["complexity", "quality"]
CRITERIA: tuple[Criterion, ...] = ("complexity", "quality")
ORDERS = ("complexity", "quality", "complexity*quality")


class Score(Frozen):
    """One row of scores.jsonl: a kept row's (or a seed's) scores, or why one is missing."""

    id: str
    round: int
    complexity: float | None = None
    quality: float | None = None  # None with no Unclear: nothing to rate (a seed the run did not answer)
    unclear: dict[str, Unclear] = Field(default_factory=dict)
    model: str = ""
    prompt_sha256: dict[str, str] = Field(default_factory=dict)

    @classmethod
    def from_legacy(cls, data: dict[str, Any]) -> Score:
        """A row of the difficulty-only scorer ({"score", "answer", "prompt_sha256": str}) read as complexity."""
        data = dict(data)
        score, answer, sha = data.pop("score"), data.pop("answer", ""), data.pop("prompt_sha256", "")
        data["complexity"] = score
        if score is None:
            data["unclear"] = {"complexity": {"outcome": "no_score", "answer": answer or ""}}
        data["prompt_sha256"] = {"complexity": sha} if isinstance(sha, str) and sha else {}
        return cls.model_validate(data)

    def value(self, by: str) -> float | None:
        """The number to rank by (``complexity``, ``quality`` or ``complexity*quality``); None when unknown."""
        if by == "complexity*quality":
            return None if self.complexity is None or self.quality is None else self.complexity * self.quality
        return getattr(self, by)

    def lacks(self, criterion: str) -> bool:
        """True when this criterion was never asked (not merely unclear): ``evol score`` has work left."""
        return getattr(self, criterion) is None and criterion not in self.unclear


def load_scores(run_dir: Path) -> dict[str, Score]:
    """A run's scores.jsonl, id to Score; empty when it was never scored."""
    file = Path(run_dir) / SCORES
    if not file.is_file():
        return {}
    out = {}
    try:
        with open(file, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):  # noqa: B007 - n names the bad line below
                if line.strip():
                    score = _parse(line)  # pydantic's own JSON parser: twice json.loads and validate here
                    out[score.id] = score
    except UnicodeDecodeError:
        raise InputError(f"{file} is not UTF-8 text.") from None
    except ValueError:
        raise InputError(f"{file}:{n} is not a score row; run 'python -m evol score' again to rewrite it.") from None
    return out


def _parse(line: str) -> Score:
    try:
        return Score.model_validate_json(line)
    except ValidationError:
        data = json.loads(line)
        if isinstance(data, dict) and "score" in data:
            return Score.from_legacy(data)
        raise


# --------------------------------------------------------------------------- scoring a run


@dataclass(frozen=True)
class Item:
    """What to score: a kept row (or a seed), with its answer when it has one."""

    id: str
    round: int
    instruction: str
    output: str | None = None


def plan_scoring(run_dir: RunDir, config, items: list[Item], prompts: dict[str, Any], identity: str, model: str):
    """``evol score --dry-run``: the calls scoring would pay for (those not in the run's call cache already), their
    tokens, cost and time; sends nothing."""
    from evol.evolve.estimate import calls_estimate
    from evol.llm.cache import call_key, open_cache

    chars, cached = [], 0
    cache = open_cache(run_dir)
    try:
        for item in items:
            for criterion in CRITERIA:
                if criterion == "quality" and item.output is None:
                    continue
                values = {"instruction": item.instruction} | ({"output": item.output} if criterion == "quality" else {})
                messages = [{"role": "user", "content": prompts[criterion].render(**values)}]
                key = call_key(identity, model, messages, config.judge_sampling, f"{item.id}:{criterion}")
                if cache.get(key) is not None:
                    cached += 1
                else:
                    chars.append(len(messages[0]["content"]))
    finally:
        cache.close()
    source = f"the prompts themselves; {cached} of the calls are in the run's cache already (free)"
    # a score and a one-line reason, or a reasoning model's thinking first
    completion = (4.0, 30.0, float(config.judge_sampling.max_tokens))
    return calls_estimate("score", chars, completion, model, config, source=source)


async def score_items(run_dir: RunDir, config, items: list[Item], prompts: dict[str, Any]) -> dict[str, Any]:
    """Score every item on each criterion it can have; write scores.jsonl; return a summary.

    ``prompts`` maps criterion to Prompt. A spent ``config.budget_usd`` or a fatal backend error stops new
    calls, writes what was scored, then raises; the same command goes on from the cache.
    """
    from evol.llm.backend import open_backend
    from evol.llm.cache import CachedChat, open_cache
    from evol.pricing import Budget, cost
    from evol.rundir.files import write_jsonl

    spent: dict[str, Usage] = {}
    answers: dict[tuple[str, str], Reading] = {}
    stopped: BaseException | None = None
    async with open_backend(config) as (chat, models, tuned):
        config = tuned  # the backend's own defaults filled in (the embedded model's, say)
        cache = open_cache(run_dir)
        cached = CachedChat(chat, cache)
        budget = Budget(config.budget_usd, config.price_table())
        units = [(item, c) for item in items for c in CRITERIA if c == "complexity" or item.output is not None]
        pending = iter(units)

        async def one(item: Item, criterion: str) -> None:
            values = {"instruction": item.instruction} | ({"output": item.output} if criterion == "quality" else {})
            messages = [{"role": "user", "content": prompts[criterion].render(**values)}]
            try:
                c = await cached.complete(
                    messages, model=models.judge, sampling=config.judge_sampling, sample=f"{item.id}:{criterion}"
                )
            except BackendError as exc:
                if exc.fatal:
                    raise
                log.warning("score: %s %s failed: %s", item.id, criterion, exc)
                answers[item.id, criterion] = Reading(None, Unclear(outcome="failed", answer=str(exc)[:300]))
                return  # not cached: scoring again asks once more
            if not c.cached:
                spent[c.model or models.judge] = spent.get(c.model or models.judge, Usage()) + c.usage
            answers[item.id, criterion] = read_score(c.text, c.finish_reason)

        async def worker() -> None:
            # a fixed pool of workers, not one task per call: a run can hold hundreds of thousands of rows
            nonlocal stopped
            for item, criterion in pending:
                if stopped is not None:
                    return
                try:
                    budget.check(spent)
                    await one(item, criterion)
                except (BudgetExceeded, BackendError) as exc:
                    stopped = stopped or exc
                    return

        try:
            await asyncio.gather(*(worker() for _ in range(max(1, min(config.connections, len(units))))))
        finally:
            cache.close()
    rows = [r for r in (_row(item, answers, models.judge, prompts) for item in items) if r is not None]
    write_jsonl(run_dir / SCORES, rows)
    run_dir.publish(SCORES)
    run_dir.settle()
    if stopped is not None:
        raise stopped
    dollars, _ = cost(spent, config.price_table())
    unclear = Counter(f"{c} {u.outcome}" for r in rows for c, u in r.unclear.items())
    return {
        "scores": str(run_dir / SCORES) if run_dir.remote is None else f"{run_dir.where}/{SCORES}",
        "rows": len(rows),
        "complexity": sum(r.complexity is not None for r in rows),
        "quality": sum(r.quality is not None for r in rows),
        "unclear": dict(unclear.most_common()),
        "from_cache": cached.hits,
        "calls": cached.misses,
        "cost_usd": round(dollars, 6),
        "model": models.judge,
    }


def _row(item: Item, answers: dict[tuple[str, str], Reading], model: str, prompts: dict[str, Any]) -> Score | None:
    got = {c: answers[item.id, c] for c in CRITERIA if (item.id, c) in answers}
    if not got:
        return None  # never asked (the budget ran out first)
    return Score(
        id=item.id,
        round=item.round,
        model=model,
        prompt_sha256={c: prompts[c].sha256 for c in got},
        unclear={c: r.unclear for c, r in got.items() if r.unclear is not None},
        **{c: r.value for c, r in got.items()},
    )
