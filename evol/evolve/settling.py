"""Settling a round: its outcomes applied to the pool in pool (seed) order, with dedup, whatever order they came in.

A kept evolution replaces its parent in the pool (in its own line, for a profile with several) and a failed one
leaves the parent in place; dedup runs in pool order, so the earliest copy of an instruction is the one kept whatever the answer timing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from evol.config import RunConfig
from evol.dedup.index import Deduper
from evol.models import Node, Outcome, Record, Rejection, Seed, asked
from evol.rules.duplicates import check_duplicate, named_again


@dataclass
class RoundResult:
    pool: list[Node]
    kept: list[Record]
    rejected: list[Rejection]


def settle_round(pool: Sequence[Node], outcomes: Iterable[Outcome], deduper: Deduper | None) -> RoundResult:
    """Apply the pool semantics: a kept evolution replaces its parent, a failed one leaves the parent in place.

    Dedup runs here, in pool (seed) order, so the earliest copy is the one kept whatever the answer timing.
    """
    return RoundSettler(pool, deduper).finish(list(outcomes))


class RoundSettler:
    """``settle_round`` while the answers arrive: an outcome is settled once every earlier one in pool order is.

    The result is settle_round's, item for item; dedup's CPU is spent while later calls are still in flight
    instead of in a pause at the end of the round.
    """

    def __init__(
        self,
        pool: Sequence[Node],
        deduper: Deduper | None,
        sink: Callable[[Outcome], None] | None = None,
        with_outputs: bool = False,
    ):
        self.pool = list(pool)
        self.deduper = deduper
        self.with_outputs = with_outputs  # keep each kept answer in the pool: --turns above 1
        self.sink = sink  # given: each settled outcome goes there, in pool order, instead of into result's lists
        self.result = RoundResult([], [], [])
        self._waiting: dict[int, Outcome] = {}
        self._index: dict[tuple[str, str], int] | None = None  # a pool holds one node per seed and line
        self._next = 0

    def offer(self, out: Outcome) -> None:
        if self._index is None:
            self._index = {(node.seed_id, node.line): i for i, node in enumerate(self.pool)}
        self._waiting[self._index[out.seed_id, out.line]] = out
        while self._next in self._waiting:
            self._settle(self.pool[self._next], self._waiting.pop(self._next))
            self._next += 1

    def finish(self, outcomes: Sequence[Outcome] | None = None) -> RoundResult:
        """The round's result, given every outcome in pool order (those offered already are not settled twice);
        ``None`` when every outcome was offered."""
        if outcomes is None:
            if self._next != len(self.pool):
                raise ValueError(
                    f"{len(self.pool) - self._next} of the round's outcomes are not settled: "
                    f"the outcome of pool entry {self._next} never came"
                )
            return self.result
        if len(outcomes) != len(self.pool):
            raise ValueError(f"{len(outcomes)} outcomes for a pool of {len(self.pool)}")
        for i in range(self._next, len(self.pool)):
            self._settle(self.pool[i], outcomes[i])
        self._next = len(self.pool)
        return self.result

    def _settle(self, node: Node, out: Outcome) -> None:
        if isinstance(out, Record) and self.deduper is not None:
            duplicate = check_duplicate(self.deduper, out)
            if duplicate is not None:
                out = duplicate
            else:
                self.deduper.add(out.id, asked(out.history, out.instruction), out.seed_id)
        elif self.deduper is not None and isinstance(out, Rejection) and out.kind == "duplicate":  # before its answer
            out = named_again(self.deduper, out)
        if isinstance(out, Record):
            output = out.output if self.with_outputs else None  # what a follow-up turn builds on
            self.result.pool.append(
                Node(**out.lineage(), instruction=out.instruction, history=out.history, output=output)
            )
        else:
            self.result.pool.append(node)
        if self.sink is not None:
            self.sink(out)
        elif isinstance(out, Record):
            self.result.kept.append(out)
        else:
            self.result.rejected.append(out)


def make_deduper(config: RunConfig, seeds: Sequence[Seed] = ()) -> Deduper | None:
    """The run's deduper, holding the seeds, each its own lineage: an evolution that repeats a seed is a
    duplicate; one that stays near its own seed is not (whether it gained anything is the judge's call)."""
    exact, near = config.rule_on("exact_duplicate"), config.rule_on("near_duplicate")
    if not (exact or near):
        return None
    deduper = Deduper(config.dedup_threshold, config.dedup_scorer, exact=exact, near=near)
    deduper.extend([s.id for s in seeds], [asked(s.history, s.instruction) for s in seeds], [s.id for s in seeds])
    return deduper
