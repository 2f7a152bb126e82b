"""Live progress of a run on a terminal, and the one-screen summary at its end.

The pipeline reports to whatever ``current()`` returns: a no-op unless the CLI opened ``live()``, so the
core and its tests never draw anything. Events may come from several threads (Prefect runs chunks on
worker threads of this process), hence the lock; on Dask the workers are other processes and the display
moves a chunk at a time instead.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator

from evol.llm.usage import Tally
from evol.models import Completion, Record, Rejection, Usage
from evol.pricing import Price, cost
from evol.rundir.manifest import Estimate, Manifest, Span, self_judged_note

STAGES = ("seed", "evolve", "judge", "respond", "evolve_answer", "rank", "optimize")


class NullProgress:
    """What the pipeline reports to when nobody is watching."""

    def round_start(self, round_no: int, rounds: int, total: int) -> None: ...

    def phase(self, name: str) -> None:
        """Work that is not a round of items (a stage of ``evol optimize``), shown by its name."""

    def call(self, stage: str, model: str, c: Completion) -> None: ...

    def item(self, outcome: Record | Rejection) -> None: ...

    def items(self, outcomes) -> None:
        for o in outcomes:
            self.item(o)

    def settled(self, rejected) -> None: ...

    def watch(self, gate) -> None:
        """Show the limit of ``--concurrency auto`` (an ``AdaptiveLimit``; a Prefect run has one per lane)."""


class Progress(NullProgress):
    """Counters of a run so far, drawn by rich a few times a second."""

    def __init__(self, prices: dict[str, Price] | None = None):
        self.prices = prices or {}
        self._lock = threading.Lock()
        self.started = time.monotonic()
        self.round_no = self.rounds = self.total = self.done = 0
        self.round_started = self.started
        self.label = ""
        self.calls: Counter = Counter()
        self.cached: Counter = Counter()
        self.by_model: dict[str, Usage] = defaultdict(Usage)
        self.by_stage: dict[str, dict[str, Usage]] = defaultdict(lambda: defaultdict(Usage))
        self.kept = 0
        self.rejected: Counter = Counter()
        self._seen: set[str] = set()  # this round's items, so a chunk's results can be reported twice
        self._gates: dict[int, object] = {}  # --concurrency auto's limits, by id: read when drawn

    def watch(self, gate) -> None:
        with self._lock:
            self._gates[id(gate)] = gate

    def round_start(self, round_no: int, rounds: int, total: int) -> None:
        with self._lock:
            self.round_no, self.rounds, self.total, self.done = round_no, rounds, total, 0
            self.round_started = time.monotonic()
            self._seen = set()

    def phase(self, name: str) -> None:
        with self._lock:
            self.label = name

    def call(self, stage: str, model: str, c: Completion) -> None:
        with self._lock:
            self.calls[stage] += 1
            if c.cached:
                self.cached[stage] += 1
            self.by_model[model] = self.by_model[model] + c.usage
            self.by_stage[stage][model] = self.by_stage[stage][model] + c.usage

    def item(self, outcome: Record | Rejection) -> None:
        with self._lock:
            if outcome.id in self._seen:
                return
            self._seen.add(outcome.id)
            self.done += 1
            # a duplicate found before it was answered counts as kept until settled, as one found after it does
            if isinstance(outcome, Record) or outcome.kind == "duplicate":
                self.kept += 1
            else:
                self.rejected[outcome.rule] += 1

    def settled(self, rejected) -> None:
        """Dedup runs when a round is settled: its duplicates were counted as kept until now."""
        with self._lock:
            for r in rejected:
                if r.kind == "duplicate":
                    self.kept -= 1
                    self.rejected[r.rule] += 1

    def __rich__(self):
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        with self._lock:
            now = time.monotonic()
            rate = self.done / max(now - self.round_started, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 and self.done else None
            what = (
                f"round {self.round_no}/{self.rounds}"
                if self.round_no
                else "seeds"
                if self.total
                else self.label or "starting"
            )
            head = Table.grid(padding=(0, 1))
            head.add_row(
                Text(what, style="bold"),
                ProgressBar(total=max(self.total, 1), completed=self.done, width=30),
                f"{self.done}/{self.total} items",
                f"{rate:.1f}/s",
                f"ETA {_clock(eta)}" if eta is not None else "ETA -",
                f"elapsed {_clock(now - self.started)}",
            )
            calls = " · ".join(
                f"{s} {self.calls[s]}" + (f" ({self.cached[s]} cached)" if self.cached[s] else "")
                for s in STAGES
                if self.calls[s]
            )
            total = sum(self.by_model.values(), Usage())
            spent, unpriced = cost(self.by_model, self.prices)
            money = f"${spent:.4f}" + (" + unpriced models" if unpriced else "")
            gates = list(self._gates.values())
            limit = (
                [
                    Text(
                        f"concurrency auto: {sum(g.limit for g in gates)} in flight at most (max {sum(g.maximum for g in gates)})"
                    )
                ]
                if gates
                else []
            )
            lines = [
                head,
                Text(f"calls   {calls or '-'}"),
                *limit,
                Text(f"tokens  {total.prompt_tokens:,} in · {total.completion_tokens:,} out · cost {money}"),
                *(
                    [Text("stages  " + stage_costs({s: dict(m) for s, m in self.by_stage.items()}, self.prices))]
                    if self.calls["rank"]
                    else []
                ),
                Text(
                    f"kept    {self.kept}   rejected "
                    + (" · ".join(f"{r} {n}" for r, n in self.rejected.most_common(6)) or "-")
                ),
            ]
        return Group(*lines)


class LiveTally(Tally):
    """A Tally that also reports each call to the live progress."""

    def add(self, stage: str, model: str, c: Completion) -> None:
        super().add(stage, model, c)
        _current.call(stage, model, c)


_current: NullProgress = NullProgress()


def current() -> NullProgress:
    return _current


@contextlib.contextmanager
def live(prices: dict[str, Price] | None = None, *, enabled: bool | None = None) -> Iterator[NullProgress]:
    """Draw the run's progress on stderr while the block runs, if stderr is a terminal (or ``enabled``)."""
    global _current
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield _current
        return
    from rich.console import Console
    from rich.live import Live

    progress = Progress(prices)
    console = Console(stderr=True)
    _current = progress
    try:
        with Live(progress, console=console, refresh_per_second=4, transient=True, redirect_stdout=False):
            # log lines go through Live's stand-in for stderr, which prints them above the display
            handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)]
            streams = [h.setStream(sys.stderr) for h in handlers]
            try:
                yield progress
            finally:
                for h, s in zip(handlers, streams, strict=True):
                    if s is not None:
                        h.setStream(s)
    finally:
        _current = NullProgress()


def summary(manifest: Manifest) -> str:
    """The end of a run on one screen: what it made, what it threw out and why, what it cost."""
    c, usage, cost_ = manifest.counts, manifest.usage, manifest.cost_usd
    calls, cached, tokens = usage.calls, usage.calls_from_cache, usage.tokens_total
    lines = [
        f"evol run {manifest.run_id}: {manifest.status}" + (f" ({manifest.reason})" if manifest.reason else ""),
        f"  dataset     {c.dataset_rows} rows in {manifest.out}/dataset.json",
        f"  seeds       {c.seeds} used, {c.seeds_skipped} skipped; {c.rounds_done} rounds done;"
        f" {c.seeds_with_kept_descendants} seeds have a kept evolution",
        f"  attempts    {c.attempts}: {c.kept} kept, {c.eliminated} eliminated, {c.duplicate} duplicate,"
        f" {c.failed} failed",
    ]
    rules = Counter(manifest.by_rule)
    if rules:
        lines.append("  rejected    " + ", ".join(f"{rule} {n}" for rule, n in rules.most_common(8)))
    if calls:
        lines.append(
            "  calls       "
            + ", ".join(
                f"{s} {n}" + (f" ({cached[s]} from cache)" if cached.get(s) else "") for s, n in sorted(calls.items())
            )
        )
    lines.append(
        f"  tokens      {tokens.prompt_tokens:,} prompt, {tokens.completion_tokens:,} completion;"
        f" cost ${cost_.total:.4f}"
        + (f" (no price for {', '.join(cost_.unpriced_models)})" if cost_.unpriced_models else "")
    )
    if any(cost_.by_stage.values()):
        lines.append("  cost/stage  " + ", ".join(f"{s} ${v:.4f}" for s, v in cost_.by_stage.items()))
    if manifest.estimate is not None:
        est = manifest.estimate
        paid = sum(calls.values()) - sum(cached.values())
        lines.append(
            f"  estimate    calls {_fmt(est.calls)} vs {paid:,} made; tokens {_fmt(est.tokens)} vs"
            f" {tokens.prompt_tokens + tokens.completion_tokens:,}; cost ${_fmt(est.cost_usd, money=True)}"
            f" vs ${cost_.total:.4f}"
        )
    if manifest.concurrency is not None:
        cc = manifest.concurrency
        lines.append(
            f"  concurrency auto: ended at {cc.final} in flight (peak {cc.peak}, at most {cc.maximum});"
            f" {cc.congested} of {cc.answers} requests answered 429 or 503"
        )
    wrote = manifest.backend.self_judged()
    if wrote and manifest.backend.judge_model:
        lines.append("  judge       " + self_judged_note(manifest.backend.judge_model, wrote))
    lines.append(f"  time        {_clock(manifest.seconds)}")
    if manifest.status != "complete":
        lines.append("  resume      run the same command again: answered calls come from the run's cache")
    return "\n".join(lines)


def describe_estimate(est: Estimate, connections: int, what: str | None = None) -> str:
    """The estimate as a few lines for a terminal; ``what`` it is of (default: the rounds)."""
    rounds = what or (f"rounds {est.rounds[0]}-{est.rounds[-1]}" if est.rounds else "no rounds left")
    lines = [
        f"estimate of {rounds} (rates from {est.source}); expected (low-high):",
        f"  {'stage':<14}{'calls':>22}{'prompt tokens':>30}{'completion tokens':>30}{'cost USD':>26}",
    ]
    for stage, s in est.by_stage.items():
        lines.append(
            f"  {stage:<14}{_fmt(s.calls):>22}{_fmt(s.prompt_tokens):>30}{_fmt(s.completion_tokens):>30}"
            f"{_fmt(s.cost_usd, money=True):>26}"
        )
    lines.append(
        f"  {'total':<14}{_fmt(est.calls):>22}{_fmt(est.tokens):>30}{'(tokens in and out)':>30}"
        f"{_fmt(est.cost_usd, money=True):>26}"
    )
    for r, stages in est.calls_by_round.items():
        lines.append(f"  round {r}: " + ", ".join(f"{s} {v:,.0f}" for s, v in stages.items()))
    lines.append(f"  wall time {_span_clock(est.seconds)} with up to {connections} requests in flight")
    if est.unpriced_models:
        lines.append(f"  no price for {', '.join(est.unpriced_models)} (counted as free)")
    return "\n".join(lines)


def _fmt(s: Span, money: bool = False) -> str:
    if money:
        return f"{s.expected:.4f} ({s.low:.4f}-{s.high:.4f})"
    return f"{s.expected:,.0f} ({s.low:,.0f}-{s.high:,.0f})"


def _span_clock(s: Span) -> str:
    return f"{_clock(s.expected)} ({_clock(s.low)}-{_clock(s.high)})"


def stage_costs(by_stage: dict[str, dict[str, Usage]], prices: dict[str, Price]) -> str:
    """ "evolve $0.0012 · respond $0.0100 · rank $0.0030": what each stage has cost so far."""
    return " · ".join(f"{s} ${cost(by_stage[s], prices)[0]:.4f}" for s in STAGES if s in by_stage)


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
