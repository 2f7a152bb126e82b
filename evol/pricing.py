"""What a run costs: tokens times a per-model price table, and the budget guard that stops a run at its limit."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from evol.errors import BudgetExceeded
from evol.models import Usage


class Price(BaseModel):
    """US dollars per million tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    input: float = Field(ge=0)
    output: float = Field(ge=0)


# List prices in USD per million tokens as published in 2026; override or extend with `prices` in the config.
DEFAULT_PRICES: dict[str, Price] = {
    "gpt-4o-mini": Price(input=0.15, output=0.60),
    "gpt-4o": Price(input=2.50, output=10.00),
    "gpt-4.1": Price(input=2.00, output=8.00),
    "gpt-4.1-mini": Price(input=0.40, output=1.60),
    "gpt-4.1-nano": Price(input=0.10, output=0.40),
    "gpt-3.5-turbo": Price(input=0.50, output=1.50),
}


#: what the OpenAI Batch API charges, as a share of the list price (input and output tokens alike)
BATCH_DISCOUNT = 0.5


def batch_prices(prices: dict[str, Price]) -> dict[str, Price]:
    """The price table of calls sent through the Batch API (``--batch``)."""
    return {m: Price(input=p.input * BATCH_DISCOUNT, output=p.output * BATCH_DISCOUNT) for m, p in prices.items()}


def price_for(model: str, prices: dict[str, Price]) -> Price | None:
    """Exact name first, then the longest known prefix (dated snapshots such as gpt-4o-2024-08-06)."""
    if model in prices:
        return prices[model]
    matches = [name for name in prices if model.startswith(name + "-")]
    return prices[max(matches, key=len)] if matches else None


def cost(by_model: dict[str, Usage], prices: dict[str, Price]) -> tuple[float, list[str]]:
    """Total USD, and the models that have no price (counted as free)."""
    total, unpriced = 0.0, []
    for model, usage in by_model.items():
        p = price_for(model, prices)
        if p is None:
            unpriced.append(model)
            continue
        total += (usage.prompt_tokens * p.input + usage.completion_tokens * p.output) / 1_000_000
    return total, sorted(unpriced)


class Budget:
    """Refuses new calls once the run has cost ``limit`` dollars; calls already in flight finish and are kept."""

    def __init__(self, limit: float | None, prices: dict[str, Price]):
        self.limit, self.prices = limit, prices

    def check(self, by_model: dict[str, Usage]) -> None:
        if self.limit is None:
            return
        spent, _ = cost(by_model, self.prices)
        if spent >= self.limit:
            raise BudgetExceeded(
                f"The budget of ${self.limit:.2f} is reached (${spent:.4f} spent); everything so far is saved: "
                f"run the same command with a higher --budget-usd to go on."
            )
