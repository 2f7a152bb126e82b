"""What ``evol optimize`` takes and writes: its options, and optimize.json (the steps, each candidate method
and its failure rate on the development set)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from evol.models import Frozen


class OptimizeOptions(Frozen):
    """What ``evol optimize`` adds to a run's options."""

    out: Path
    steps: int = Field(3, ge=1, le=50)
    candidates: int = Field(3, ge=1, le=20)
    batch_size: int = Field(8, ge=1)
    trajectory_rounds: int = Field(2, ge=1, le=10)
    dev_size: int = Field(16, ge=1)
    dev_file: Path | None = None
    optimizer_model: str | None = None
    baseline_profile: str | None = "general"  # evaluated once on the dev set, for comparison; None: not


class Evaluation(Frozen):
    """One method on the development set: one evolution per dev seed; a failure is an elimination or a duplicate."""

    attempts: int
    failures: int
    failure_rate: float
    by_rule: dict[str, int]
    calls_failed: int = 0  # backend failures: neither a success nor the method's fault, left out of the rate


class MethodCandidate(Frozen):
    index: int  # 0: the method the step started from
    method: str
    valid: bool
    reason: str = ""  # why an invalid candidate was rejected
    evaluation: Evaluation | None = None
    kept: bool = False


class Start(MethodCandidate):
    """The method the loop starts from: evaluated before the first step, so its evaluation is always there."""

    evaluation: Evaluation


class Baseline(Frozen):
    """A hand-written profile on the same development set: what the optimized method is compared with."""

    profile: str
    evaluation: Evaluation


class Step(Frozen):
    step: int
    batch: tuple[str, ...]  # seed ids of the mini-batch
    analysis: str
    candidates: tuple[MethodCandidate, ...]
    best_failure_rate: float
    improved: bool


class OptimizeReport(Frozen):
    status: str  # running, complete
    reason: str
    profile: str
    operation: str
    evolve_model: str
    optimizer_model: str
    dev: tuple[str, ...]
    start: Start
    baseline: Baseline | None = None
    steps: tuple[Step, ...] = ()
    best_method: str
    best_failure_rate: float
    usage: dict[str, Any] = Field(default_factory=dict)  # calls and tokens by stage and model, as a run's manifest
    cost_usd: dict[str, Any] = Field(default_factory=dict)
