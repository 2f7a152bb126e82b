"""Complexity and quality scores: an LLM judge rates each kept row 1-10 on each criterion, into RUN_DIR/scores.jsonl.

Complexity rates the instruction, quality the answer to it. Two methods (Deita, arXiv 2312.15685): ``direct``
asks about each row alone; ``evol`` (Deita's EVOL COMPLEXITY and EVOL QUALITY) shows the judge a seed and every
kept evolution of it side by side and has it score them against one another, so scores within a lineage are
comparable and spread out instead of bunching at one value. Every call goes through the run's call cache with a
sample id per (row or lineage, criterion), so scoring again after a crash or a spent budget pays only for what
was never answered. An answer with no readable score is recorded as an :class:`Unclear` outcome with its
reason, never as a default number.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from evol.errors import BackendError, BudgetExceeded, InputError
from evol.models import Frozen, Usage
from evol.quality.score_reader import Reading, Unclear, read_score, read_scores
from evol.rundir.folder import SCORES, RunDir

log = logging.getLogger("evol")

Criterion = Literal["complexity", "quality"]
CRITERIA: tuple[Criterion, ...] = ("complexity", "quality")
ORDERS = ("complexity", "quality", "complexity*quality")
Method = Literal["direct", "evol"]
METHODS: tuple[Method, ...] = ("evol", "direct")  # the first is the default
#: at most this many versions in one side-by-side call (a seed and its evolutions; longer lineages are split):
#: Deita ranks six at a time, and a judge reads a long list less carefully
GROUP_MAX = 8


class Score(Frozen):
    """One row of scores.jsonl: a kept row's (or a seed's) scores, or why one is missing."""

    id: str
    round: int
    complexity: float | None = None
    quality: float | None = None  # None with no Unclear: nothing to rate (a seed the run did not answer)
    unclear: dict[str, Unclear] = Field(default_factory=dict)
    model: str = ""  # the model that judged
    prompt_sha256: dict[str, str] = Field(default_factory=dict)
    method: Method = "direct"  # evol: scored side by side with its lineage (``compared``: those ids, in order)
    compared: tuple[str, ...] = ()

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
    return {score.id: score for score in iter_scores(run_dir)}  # a later row of an id wins


def iter_scores(run_dir: Path) -> Iterator[Score]:
    """A run's scores.jsonl a row at a time, in file order; nothing when it was never scored."""
    file = Path(run_dir) / SCORES
    if not file.is_file():
        return
    try:
        with open(file, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):  # noqa: B007 - n names the bad line below
                if line.strip():
                    yield _parse(line)  # pydantic's own JSON parser: twice json.loads and validate here
    except UnicodeDecodeError:
        raise InputError(f"{file} is not UTF-8 text.") from None
    except ValueError:
        raise InputError(f"{file}:{n} is not a score row; run 'python -m evol score' again to rewrite it.") from None


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
    seed_id: str = ""  # the lineage it belongs to ("": its own), which ``evol`` scores side by side


@dataclass(frozen=True)
class Ask:
    """One judge call: the prompt's values, the items it scores on ``criterion`` (in the order shown), its sample id."""

    criterion: str
    items: tuple[Item, ...]
    values: dict[str, str]
    sample: str


def asks(items: list[Item], method: Method) -> list[Ask]:
    """The calls that score ``items``: one per item and criterion (``direct``), or one per lineage (a seed and its
    kept evolutions, by round, at most GROUP_MAX at a time) and criterion (``evol``). Quality only for answered items."""
    out: list[Ask] = []
    for criterion in CRITERIA:
        todo = [i for i in items if criterion == "complexity" or i.output is not None]
        if method == "direct":
            out += [Ask(criterion, (i,), _direct_values(i, criterion), f"{i.id}:{criterion}") for i in todo]
            continue
        lineages: dict[str, list[Item]] = {}
        for i in todo:
            lineages.setdefault(i.seed_id or i.id, []).append(i)
        for group in lineages.values():
            group.sort(key=lambda i: i.round)  # stable: within a round, file order
            for start in range(0, len(group), GROUP_MAX):
                part = tuple(group[start : start + GROUP_MAX])
                out.append(
                    Ask(criterion, part, {"variants": _variants(part, criterion)}, f"{part[0].id}:evol-{criterion}")
                )
    return out


def _direct_values(item: Item, criterion: str) -> dict[str, str]:
    return {"instruction": item.instruction} | ({"output": item.output or ""} if criterion == "quality" else {})


def _variants(items: tuple[Item, ...], criterion: str) -> str:
    """The numbered versions a side-by-side judge compares: instructions, or instruction and response pairs."""
    if criterion == "complexity":
        return "\n\n".join(f"[{n}] {i.instruction}" for n, i in enumerate(items, 1))
    return "\n\n".join(
        f"[{n}] Instruction:\n{i.instruction}\n\n[{n}] Response:\n{i.output}" for n, i in enumerate(items, 1)
    )


def sampling_for(ask: Ask, config):
    """The judge's sampling for ``ask``: side by side, room for a line per version (and a reasoning model's
    thinking)."""
    sampling = config.judge_sampling
    if len(ask.items) > 1:
        sampling = sampling.model_copy(update={"max_tokens": max(sampling.max_tokens, 64 * len(ask.items))})
    return sampling


async def score_items(
    run_dir: RunDir, config, items: list[Item], prompts: dict[str, Any], method: Method = "direct"
) -> dict[str, Any]:
    """Score every item on each criterion it can have; write scores.jsonl; return a summary.

    ``prompts`` maps criterion to Prompt (the side-by-side ones for ``evol``). A spent ``config.budget_usd`` or
    a fatal backend error stops new calls, writes what was scored, then raises; the same command goes on from
    the cache.
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
        units = asks(items, method)
        pending = iter(units)
        compared: dict[tuple[str, str], tuple[str, ...]] = {}

        async def one(ask: Ask) -> None:
            messages = [{"role": "user", "content": prompts[ask.criterion].render(**ask.values)}]
            sampling = sampling_for(ask, config)
            try:
                c = await cached.complete(messages, model=models.judge, sampling=sampling, sample=ask.sample)
            except BackendError as exc:
                if exc.fatal:
                    raise
                log.warning("score: %s %s failed: %s", ask.items[0].id, ask.criterion, exc)
                for item in ask.items:
                    answers[item.id, ask.criterion] = Reading(None, Unclear(outcome="failed", answer=str(exc)[:300]))
                return  # not cached: scoring again asks once more
            if not c.cached:
                spent[c.model or models.judge] = spent.get(c.model or models.judge, Usage()) + c.usage
            if method == "direct":
                answers[ask.items[0].id, ask.criterion] = read_score(c.text, c.finish_reason)
                return
            ids = tuple(i.id for i in ask.items)
            for item, reading in zip(ask.items, read_scores(c.text, c.finish_reason, len(ask.items)), strict=True):
                answers[item.id, ask.criterion] = reading
                compared[item.id, ask.criterion] = ids

        async def worker() -> None:
            # a fixed pool of workers, not one task per call: a run can hold hundreds of thousands of rows
            nonlocal stopped
            for ask in pending:
                if stopped is not None:
                    return
                try:
                    budget.check(spent)
                    await one(ask)
                except (BudgetExceeded, BackendError) as exc:
                    stopped = stopped or exc
                    return

        try:
            await asyncio.gather(*(worker() for _ in range(max(1, min(config.connections, len(units))))))
        finally:
            cache.close()
    rows = [r for r in (_row(item, answers, models.judge, prompts, method, compared) for item in items) if r]
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
        "method": method,
    }


def _row(
    item: Item,
    answers: dict[tuple[str, str], Reading],
    model: str,
    prompts: dict[str, Any],
    method: Method,
    compared: dict[tuple[str, str], tuple[str, ...]],
) -> Score | None:
    got = {c: answers[item.id, c] for c in CRITERIA if (item.id, c) in answers}
    if not got:
        return None  # never asked (the budget ran out first)
    return Score(
        id=item.id,
        round=item.round,
        model=model,
        prompt_sha256={c: prompts[c].sha256 for c in got},
        unclear={c: r.unclear for c, r in got.items() if r.unclear is not None},
        method=method,
        # the lineage it was scored against (its complexity's, which covers every version; quality's is the answered ones)
        compared=compared.get((item.id, "complexity"), ()),
        **{c: r.value for c, r in got.items()},
    )
