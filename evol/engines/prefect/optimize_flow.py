"""``evol optimize`` as a Prefect flow: each stage of the loop is a task run, the result an artifact.

The loop is ``evol.optimize.optimizer.Optimizer``'s, unchanged; the flow only runs each of its stages (evaluating the
dev seeds, the starting method and the baseline profile, a step's trajectories, each candidate with its own
analysis) as a task,
so the Prefect UI shows where an optimization is and what each stage cost in time. The stages run in the
flow's own event loop, sharing its connection pool and call cache: a task is a record of the work here,
not a separate worker. Exactly-once spending is the call cache's, as on the local engine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from prefect import flow, task
from prefect.artifacts import acreate_markdown_artifact
from prefect.cache_policies import NO_CACHE

from evol.config import RunConfig
from evol.engines.prefect import chunks
from evol.engines.prefect.evol_flow import FlowConfig, prefect_session
from evol.optimize.optimizer import optimize
from evol.optimize.types import OptimizeOptions, OptimizeReport


@task(name="optimize-stage", task_run_name="{name}", cache_policy=NO_CACHE, persist_result=False)
async def optimize_stage(name: str, work: Callable[[], Awaitable[Any]]) -> Any:
    """One stage of the loop; its calls are answered from the call cache when a restart reaches it again."""
    return await work()


@flow(name="evol-optimize", log_prints=False, validate_parameters=True)
async def optimize_flow(config: FlowConfig, options: OptimizeOptions) -> dict:
    """Learn the evolving method on the seeds, as ``python -m evol optimize`` does; returns optimize.json's content."""
    cfg = RunConfig(**config.explicit_dict(), api_key=chunks.api_key())
    report = await optimize(cfg, options, stage=optimize_stage)  # each stage a task run
    await acreate_markdown_artifact(
        markdown=summary(report), key="evol-optimize-summary", description=f"evol optimize into {options.out}"
    )
    return report.model_dump(mode="json")


def summary(report: OptimizeReport) -> str:
    """The development failure rate per step, as the flow run's artifact shows it."""
    start = report.start.evaluation
    lines = [
        f"# evol optimize: {report.status}",
        "",
        f"{report.reason}.",
        "",
        "| step | candidates (valid) | best failure rate | complexity | improved | why |",
        "|---|---|---|---|---|---|",
        f"| start | 1 (1) | {start.failure_rate:.3f} | {_figure(start.complexity)} | | |",
    ]
    for s in report.steps:
        valid = sum(c.valid for c in s.candidates)
        lines.append(
            f"| {s.step} | {len(s.candidates)} ({valid}) | {s.best_failure_rate:.3f} | {_figure(s.best_complexity)} "
            f"| {'yes' if s.improved else 'no'} | {s.why} |"
        )
    if report.baseline is not None:
        base = report.baseline
        lines += [
            "",
            f"Profile `{base.profile}` on the same development set: failure rate {base.evaluation.failure_rate:.3f}.",
        ]
    return "\n".join(lines) + "\n"


def _figure(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def optimize_with_prefect(config: RunConfig, options: OptimizeOptions) -> OptimizeReport:
    """``python -m evol optimize`` through Prefect: the same folder and optimize.json as the local engine."""
    with prefect_session(config):
        # a dict, not a FlowConfig: Prefect validates it into one (validate_parameters) and stores only the options
        # the user set, where a model would be stored with every default; Flow.__call__'s type takes only the model
        data = asyncio.run(optimize_flow(config=config.explicit_dict(), options=options))  # type: ignore[call-overload]
    return OptimizeReport.model_validate(data)
