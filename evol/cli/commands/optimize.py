"""``python -m evol optimize``: learn the evolving method from your own seeds (Auto Evol-Instruct)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from pydantic import ValidationError

from evol.config import explain_validation
from evol.errors import ConfigError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "optimize",
        help="improve the auto profile's evolving method on your seeds (Auto Evol-Instruct)",
        description="Evolve mini-batches of your seeds with the auto profile's method, let an optimizer "
        "model name the failures and propose better methods, keep the one with the lowest "
        "failure rate on a development set, and write it as a profile into --out.",
    )
    from evol.cli.options import add_engine_option, add_run_options

    add_run_options(p)  # the same seeds, backend, sampling and rule options as a run; --rounds is not used
    add_engine_option(p, "run as a Prefect flow, each stage of the loop a task in its UI")
    g = p.add_argument_group("optimization")
    g.add_argument("--steps", type=int, default=5, help="optimization steps at most (default 5)")
    g.add_argument(
        "--patience",
        type=int,
        default=2,
        help="stop after this many steps in a row in which no candidate beats the best method (default 2)",
    )
    g.add_argument("--candidates", type=int, default=3, help="candidate methods per step (default 3)")
    g.add_argument("--batch-size", type=int, default=8, help="seeds in each step's mini-batch (default 8)")
    g.add_argument("--trajectory-rounds", type=int, default=2, help="rounds each mini-batch is evolved for (default 2)")
    g.add_argument(
        "--dev-size",
        type=int,
        default=50,
        help="the last N seeds are the development set (default 50: one item moves the failure rate by 2 points)",
    )
    g.add_argument(
        "--dev-samples",
        type=int,
        default=1,
        help="evolutions of each development seed per evaluation (default 1); more make a small set count for more",
    )
    g.add_argument(
        "--complexity-tolerance",
        type=float,
        default=0.05,
        help="how far (relative) a candidate's complexity figure may fall below the most complex method kept so far "
        "and still win (default 0.05)",
    )
    g.add_argument("--dev-file", type=Path, help="a seed file to use as the development set instead")
    g.add_argument("--optimizer-model", help="model that analyses trajectories and writes methods (default --model)")
    g.add_argument(
        "--baseline-profile",
        default="general",
        help="hand-written profile also evaluated on the development set, for comparison (default "
        "general; 'none' leaves it out)",
    )
    p.set_defaults(func=main, profile="auto")


def main(args: argparse.Namespace) -> int:
    from evol.cli.logs import quiet_prefect
    from evol.cli.options import config_from_args
    from evol.evolve import progress
    from evol.optimize.optimizer import check_optimize, optimize
    from evol.optimize.types import OptimizeOptions

    if args.out is None:
        raise ConfigError(
            "evol optimize needs --out DIR: the folder for the optimized profile, optimize.json and the call cache."
        )
    config = config_from_args(args)
    try:
        opts = OptimizeOptions(
            out=args.out,
            steps=args.steps,
            patience=args.patience,
            candidates=args.candidates,
            batch_size=args.batch_size,
            trajectory_rounds=args.trajectory_rounds,
            dev_size=args.dev_size,
            dev_samples=args.dev_samples,
            complexity_tolerance=args.complexity_tolerance,
            dev_file=args.dev_file,
            optimizer_model=args.optimizer_model,
            baseline_profile=None if args.baseline_profile == "none" else args.baseline_profile,
        )
    except ValidationError as exc:
        raise ConfigError(explain_validation(exc)) from None
    with progress.live(config.price_table(), enabled=sys.stderr.isatty() and not args.quiet):
        if args.engine == "local":
            report = asyncio.run(optimize(config, opts))
        else:
            check_optimize(config, opts)  # bad input gets its one sentence before Prefect spends seconds starting
            from evol.engines.prefect.optimize_flow import optimize_with_prefect

            quiet_prefect(args)  # after the import: importing Prefect can replace the root logger's handlers
            report = optimize_with_prefect(config, opts)
    rates = [report.start.evaluation.failure_rate, *(s.best_failure_rate for s in report.steps)]
    base = report.baseline
    if not args.quiet:
        vs = f"; profile {base.profile} on the same seeds: {base.evaluation.failure_rate:.3f}" if base else ""
        calls = sum(report.usage.get("calls", {}).values())
        cached = sum(report.usage.get("calls_from_cache", {}).values())
        print(
            f"evol: dev failure rate by step: {' -> '.join(f'{r:.3f}' for r in rates)} ({report.reason}{vs}); "
            f"complexity {_figure(report.start.evaluation.complexity)} -> {_figure(report.best_complexity)}; "
            f"{calls} calls ({cached} from the cache), ${report.cost_usd.get('total', 0):.4f}; "
            f"the method is in {str(args.out).rstrip('/')}/prompts/{report.profile}",
            file=sys.stderr,
        )
        items = report.start.evaluation.attempts
        if items and 100 / items > 2:  # the paper's comparisons need a finer rate than this
            print(
                f"evol: note: {items} development items, so one item moves the failure rate by {100 / items:.1f} "
                f"points; raise --dev-size or --dev-samples to reach 50 items (2 points)",
                file=sys.stderr,
            )
    print(
        json.dumps(
            {
                "out": str(args.out),
                "steps": len(report.steps),
                "start_failure_rate": rates[0],
                "best_failure_rate": report.best_failure_rate,
                "baseline_failure_rate": base.evaluation.failure_rate if base else None,
                "start_complexity": report.start.evaluation.complexity,
                "best_complexity": report.best_complexity,
                "prompts_dir": f"{str(args.out).rstrip('/')}/prompts",
            }
        )
    )
    return 0


def _figure(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"
