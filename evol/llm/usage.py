"""What a run's calls used: calls, cache hits, failures and tokens per stage and per model, and what that cost."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from evol.models import Completion, Usage
from evol.pricing import Price, cost


@dataclass
class Tally:
    """Calls and tokens per stage and per model, live."""

    calls: Counter = field(default_factory=Counter)
    cached: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)  # calls that failed for good, after retries
    saved: Counter = field(default_factory=Counter)  # answer calls not made: the evolution was a duplicate already
    tokens: dict[str, Usage] = field(default_factory=lambda: defaultdict(Usage))
    by_model: dict[str, Usage] = field(default_factory=lambda: defaultdict(Usage))
    by_stage_model: dict[tuple[str, str], Usage] = field(default_factory=lambda: defaultdict(Usage))

    def add(self, stage: str, model: str, c: Completion) -> None:
        self.calls[stage] += 1
        if c.cached:
            self.cached[stage] += 1
        self.tokens[stage] = self.tokens[stage] + c.usage
        self.by_model[model] = self.by_model[model] + c.usage
        self.by_stage_model[stage, model] = self.by_stage_model[stage, model] + c.usage

    def count_saved(self, calls: dict[str, int]) -> None:
        self.saved.update(calls)

    def stage_models(self) -> dict[str, dict[str, Usage]]:
        """Tokens per stage, split by model: what the per-stage cost is priced from."""
        out: dict[str, dict[str, Usage]] = defaultdict(dict)
        for (stage, model), usage in self.by_stage_model.items():
            out[stage][model] = usage
        return dict(out)

    def cost_books(self, prices: dict[str, Price], budget: float | None) -> dict:
        """What a manifest (or optimize.json) says of the money: the total, the budget, the models without a
        price, and the cost per stage (several candidates, answer evolution and ranking multiply the answers')."""
        total, unpriced = cost(self.by_model, prices)
        by_stage = {stage: round(cost(models, prices)[0], 6) for stage, models in sorted(self.stage_models().items())}
        return {"total": round(total, 6), "budget": budget, "unpriced_models": unpriced, "by_stage": by_stage}

    def as_dict(self) -> dict:
        return {
            "calls": dict(self.calls),
            "calls_from_cache": dict(self.cached),
            "calls_failed": dict(self.errors),
            "calls_saved": dict(self.saved),
            "tokens_by_stage": {k: v.model_dump() for k, v in self.tokens.items()},
            "tokens_by_model": {k: v.model_dump() for k, v in self.by_model.items()},
            "tokens_by_stage_model": {
                s: {m: u.model_dump() for m, u in ms.items()} for s, ms in self.stage_models().items()
            },
            "tokens_total": sum((v for v in self.tokens.values()), Usage()).model_dump(),
        }
