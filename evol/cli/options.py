"""The options ``run``, ``serve`` and ``optimize`` share, and the RunConfig they make (the run's options are
made from RunConfig in ``_run_options``)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from evol.cli.run_options import add_run_options, config_from_args
from evol.errors import ConfigError

__all__ = [
    "add_engine_option",
    "add_prefect_options",
    "add_run_options",
    "config_from_args",
    "prefect_kwargs",
]


def add_engine_option(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--engine",
        choices=("prefect", "local"),
        default=os.environ.get("EVOL_ENGINE") or "prefect",
        help=f"prefect (default): {what}; local: the same work in this process, without Prefect's "
        f"few seconds of start-up (default from EVOL_ENGINE)",
    )


def add_prefect_options(p: argparse.ArgumentParser) -> None:
    """Options of a run through Prefect; ``run`` can reuse them."""
    g = p.add_argument_group("prefect")
    g.add_argument(
        "--chunk-size",
        "--batch-size",
        dest="chunk_size",
        type=int,
        default=None,
        help="pool entries per chunk task (default 256); a finished chunk is checkpointed "
        "(--batch-size, its old name, still works)",
    )
    g.add_argument("--dask-address", metavar="tcp://HOST:PORT", help="run the chunks on this Dask cluster")
    g.add_argument(
        "--dask-workers", type=int, metavar="N", help="run the chunks on a local Dask cluster of N processes"
    )


def prefect_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of ``evol.engines.prefect.evol_flow.run_with_prefect`` / ``evol.engines.prefect.serving.serve`` from parsed options."""
    if args.chunk_size is not None and args.chunk_size < 1:
        raise ConfigError("--chunk-size must be at least 1.")
    if args.dask_workers is not None and args.dask_workers < 1:
        raise ConfigError("--dask-workers must be at least 1.")
    if args.dask_address and args.dask_workers:
        raise ConfigError("Give --dask-address or --dask-workers, not both.")
    out: dict[str, Any] = {"dask_address": args.dask_address, "dask_workers": args.dask_workers}
    if args.chunk_size is not None:
        out["chunk_size"] = args.chunk_size
    return out
