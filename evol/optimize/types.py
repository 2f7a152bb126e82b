"""What ``evol optimize`` takes and writes: its options, and optimize.json (the steps, each candidate method,
its failure rate on the development set by the paper's failure kinds, its complexity figure and why it won or lost)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from evol.models import Frozen

#: Auto Evol-Instruct's failure kinds (Zeng et al., 2024, read from the answer to the evolved instruction where the
#: paper does), and evol's own eliminations besides them
FailureKind = Literal["stagnant_complexity", "insufficient_qualification", "loss_of_key_information", "evol_rules"]
FAILURE_KINDS: tuple[FailureKind, ...] = (
    "stagnant_complexity",
    "insufficient_qualification",
    "loss_of_key_information",
    "evol_rules",
)


class OptimizeOptions(Frozen):
    """What ``evol optimize`` adds to a run's options."""

    out: Path
    steps: int = Field(default=5, ge=1, le=50)
    # steps in a row without a better method before the loop stops: one flat step is often a bad draw of
    # mini-batch and analyses, not the end of what the optimizer can find
    patience: int = Field(default=2, ge=1, le=50)
    candidates: int = Field(default=3, ge=1, le=20)
    batch_size: int = Field(default=8, ge=1)
    trajectory_rounds: int = Field(default=2, ge=1, le=10)
    # 50 dev items: one item moves the rate by 2 points at most (16 moved it by 6)
    dev_size: int = Field(default=50, ge=1)
    dev_samples: int = Field(
        default=1, ge=1, le=20
    )  # evolutions of each dev seed per evaluation (the items: size × samples)
    dev_file: Path | None = None
    optimizer_model: str | None = None
    baseline_profile: str | None = "general"  # evaluated once on the dev set, for comparison; None: not
    # how far (relative) a candidate's complexity may fall below the most complex method kept so far
    complexity_tolerance: float = Field(default=0.05, ge=0.0, lt=1.0)


class Evaluation(Frozen):
    """One method on the development set: ``dev_samples`` evolutions per dev seed; a failure is an elimination or a
    duplicate, and each is counted under one of the paper's failure kinds too."""

    attempts: int
    failures: int
    failure_rate: float
    by_rule: dict[str, int]
    calls_failed: int = 0  # backend failures: neither a success nor the method's fault, left out of the rate
    by_kind: dict[str, int] = Field(default_factory=dict)
    rate_by_kind: dict[str, float] = Field(default_factory=dict)
    # the mean, over the kept evolutions, of their answer's words over their seed's answer's words (each ratio at
    # most COMPLEXITY_CAP); None: no kept evolution (or no seed answer) to measure
    complexity: float | None = None
    complexity_items: int = 0  # the kept evolutions the complexity figure is the mean of


class MethodCandidate(Frozen):
    index: int  # 0: the method the step started from
    method: str
    valid: bool
    reason: str = ""  # why an invalid candidate was rejected
    analysis: str = ""  # the optimizer's own analysis of the step's trajectories that this candidate was written from
    evaluation: Evaluation | None = None
    kept: bool = False
    why: str = ""  # why it was kept, or why not


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
    candidates: tuple[MethodCandidate, ...]
    best_failure_rate: float
    best_complexity: float | None = None
    improved: bool
    why: str = ""  # why the winner won, or why no candidate did
    min_complexity: float | None = None  # the floor a candidate's complexity had to reach this step


class OptimizeReport(Frozen):
    status: str  # running, complete
    reason: str
    profile: str
    operation: str
    evolve_model: str
    optimizer_model: str
    dev: tuple[str, ...]
    dev_samples: int = 1
    leak_phrases: tuple[str, ...] = ()  # frozen from the starting method: every candidate is checked against them
    start: Start
    baseline: Baseline | None = None
    steps: tuple[Step, ...] = ()
    best_method: str
    best_failure_rate: float
    best_complexity: float | None = None
    usage: dict[str, Any] = Field(default_factory=dict)  # calls and tokens by stage and model, as a run's manifest
    cost_usd: dict[str, Any] = Field(default_factory=dict)
