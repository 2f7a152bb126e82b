"""``python -m evol run``: evolve seeds into a dataset."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from evol.cli.logs import quiet_prefect
from evol.cli.options import (
    add_engine_option,
    add_prefect_options,
    add_run_options,
    config_from_args,
    prefect_kwargs,
)
from evol.errors import ConfigError

if TYPE_CHECKING:
    from evol.config import RunConfig


def add_parser(sub) -> None:
    p = sub.add_parser(
        "run",
        help="evolve seed instructions into a dataset",
        description="Evolve seed instructions into an instruction/output dataset (WizardLM Evol-Instruct).",
    )
    add_run_options(p)
    add_dry_run_options(p)
    add_engine_option(p, "run as a Prefect flow, visible in its UI, checkpointed per chunk")
    add_prefect_options(p)
    p.set_defaults(func=main)


def add_dry_run_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("estimate")
    g.add_argument(
        "--dry-run",
        action="store_true",
        help="pay for nothing: print the calls, tokens, cost and wall time the run is expected to take (of the "
        "rounds its folder has not finished), each with a range",
    )
    g.add_argument(
        "--probe",
        type=int,
        metavar="N",
        help="with --dry-run: measure the rates on a real first round of the first N seeds (paid for, into "
        "<run folder>.probe) instead of the method's defaults",
    )


def dry_run(config: RunConfig, probe: int | None) -> int:
    """``--dry-run``: the estimate on stderr and as JSON on stdout; with ``--probe N``, from a paid probe run."""
    from evol.evolve.estimate import default_rates, estimate, measured_rates, plan
    from evol.evolve.progress import describe_estimate
    from evol.evolve.run import check_inputs, default_out, run_id_for
    from evol.llm.local.setup import tune_for_local, uses_embedded_model
    from evol.rundir.folder import MANIFEST
    from evol.rundir.store import is_remote, staged_folder

    profile, seedset = check_inputs(config)
    if uses_embedded_model(config):  # estimated with the settings the run would get (concurrency, max_tokens)
        config = tune_for_local(config)
    if probe is not None and probe < 1:
        raise ConfigError("--probe takes a number of seeds of at least 1.")
    # a run folder at a URL is read from a local copy of what it holds (not its call-cache shards)
    with staged_folder(default_out(config), skip=("calls",)) as out:
        if probe and not (out / MANIFEST).is_file():
            from evol.engines.local import execute

            n = min(probe, len(seedset.seeds))
            # beside a local folder; a URL's copy is temporary, so its probe goes where a local run would
            local = out if not is_remote(default_out(config)) else Path("datasets") / "runs" / run_id_for(config)
            where = local.with_name(local.name + ".probe")
            update = {"limit": (config.limit and min(config.limit, n)) or n, "rounds": 1, "out": str(where)}
            probed = asyncio.run(execute(config.model_copy(update={**update, "include_seeds": False})))
            b = probed.backend
            rates = measured_rates(
                config,
                profile,
                seedset.seeds[:n],
                probed,
                where,
                f"a probe of {n} seeds' first round (paid, in {where})",
            )
            evolve = b.evolve_model or "?"
            models = (evolve, b.response_model or evolve, b.judge_model or evolve)
            est = estimate(config, profile, seedset, rates or default_rates(config), models)
        else:
            est = plan(config, profile, seedset, out)
    print(describe_estimate(est, config.connections), file=sys.stderr)
    print(json.dumps(est.model_dump(mode="json")), file=sys.stdout)
    return 0


def main(args: argparse.Namespace) -> int:
    from evol.engines.local import execute
    from evol.evolve import progress
    from evol.evolve.run import inputs_checked

    config = config_from_args(args)
    if args.dry_run:
        return dry_run(config, args.probe)
    if args.probe:
        raise ConfigError("--probe N goes with --dry-run: it pays for N seeds' first round to measure the rates.")
    kwargs = prefect_kwargs(args)
    watch = sys.stderr.isatty() and not args.quiet
    engine = args.engine
    if config.batch and engine == "prefect":
        # a stage's calls belong in one Batch API file; Prefect's chunk tasks would each send a small one
        logging.getLogger("evol").info("--batch runs on the local engine (one batch file per stage and model)")
        engine = "local"
    if engine == "local" and (kwargs["dask_address"] or kwargs["dask_workers"] or "chunk_size" in kwargs):
        raise ConfigError("--dask-address, --dask-workers and --chunk-size need --engine prefect.")
    # on Prefect, bad input gets its one sentence before Prefect spends seconds starting, and the flow reuses it
    checked = inputs_checked(config) if engine == "prefect" else contextlib.nullcontext()
    with checked, progress.live(config.price_table(), enabled=watch):
        if engine == "local":
            manifest = asyncio.run(execute(config))
        else:
            from evol.engines.prefect.server import launch

            server = launch()  # Prefect's temporary server boots while this process imports Prefect
            try:
                from evol.engines.prefect.evol_flow import run_with_prefect

                quiet_prefect(args)  # after the import: importing Prefect can replace the root logger's handlers
                manifest = run_with_prefect(config, server=server, **kwargs)
            finally:
                if server is not None:
                    server.stop()  # stopped already, unless the run never reached it
    if not args.quiet:
        print(progress.summary(manifest), file=sys.stderr)
    c = manifest.counts
    print(
        json.dumps(
            {
                "out": manifest.out,
                "dataset_rows": c.dataset_rows,
                "kept": c.kept,
                "eliminated": c.eliminated,
                "duplicate": c.duplicate,
                "failed": c.failed,
            }
        ),
        file=sys.stdout,
    )
    return 0
