"""``python -m evol run``: evolve seeds into a dataset."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys

from evol.cli.logs import quiet_prefect
from evol.cli.options import (
    add_engine_option,
    add_prefect_options,
    add_run_options,
    config_from_args,
    prefect_kwargs,
)
from evol.errors import ConfigError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "run",
        help="evolve seed instructions into a dataset",
        description="Evolve seed instructions into an instruction/output dataset (WizardLM Evol-Instruct).",
    )
    add_run_options(p)
    add_engine_option(p, "run as a Prefect flow, visible in its UI, checkpointed per chunk")
    add_prefect_options(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from evol.engines.local import execute
    from evol.evolve import progress
    from evol.evolve.run import inputs_checked

    config = config_from_args(args)
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
