"""Scheduled runs: ``python -m evol serve`` turns a run's options into a served Prefect deployment.

A scheduled run is incremental by construction: every run of the schedule writes into the same run
folder, so the call cache answers every call already made for the seeds evolved before, and the
per-chunk checkpoints skip whole chunks whose seeds have not changed. Only new seeds cost calls.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evol.config import RunConfig
from evol.engines.prefect.evol_flow import CHUNK_SIZE, evol_flow
from evol.errors import ConfigError
from evol.evolve.run import default_out

_PATH_KEYS = ("seeds", "out", "prompts_dir", "model_path")


def deployment_parameters(
    config: RunConfig, *, chunk_size: int = CHUNK_SIZE, dask_address: str | None = None, dask_workers: int | None = None
) -> dict[str, Any]:
    """What the schedule stores on the Prefect server for every run: absolute paths, never the key.

    The run folder is fixed here (``--out`` or the default for this config), so every scheduled run
    resumes the same folder whatever the working directory of the process that runs it.
    """
    data = {**config.explicit_dict(), "out": str(default_out(config))}  # unset options keep their engine's defaults
    for key in _PATH_KEYS:
        if data.get(key) is not None:
            data[key] = str(Path(data[key]).expanduser().resolve())
    params: dict[str, Any] = {"config": data, "chunk_size": chunk_size}
    if dask_address:
        params["dask_address"] = dask_address
    if dask_workers:
        params["dask_workers"] = dask_workers
    return params


def serve(
    config: RunConfig,
    *,
    cron: str | None = None,
    interval: float | None = None,
    timezone: str | None = None,
    name: str = "evol",
    chunk_size: int = CHUNK_SIZE,
    dask_address: str | None = None,
    dask_workers: int | None = None,
) -> None:
    """Serve ``evol_flow`` on a schedule until interrupted; runs start in child processes of this one."""
    from prefect.schedules import Cron, Interval
    from prefect.settings import PREFECT_API_URL
    from prefect.types.entrypoint import EntrypointType

    if bool(cron) == bool(interval):
        raise ConfigError("Give exactly one of --cron or --interval.")
    if not PREFECT_API_URL.value():
        # a temporary server has no scheduler: nothing would ever run
        raise ConfigError(
            "Scheduled runs need a Prefect server: start one with `prefect server start` and set "
            "PREFECT_API_URL=http://127.0.0.1:4200/api (or your team's server) in this shell."
        )
    schedule = Cron(cron, timezone=timezone) if cron else Interval(interval or 0, timezone=timezone)
    evol_flow.serve(
        name=name,
        schedules=[schedule],
        parameters=deployment_parameters(
            config, chunk_size=chunk_size, dask_address=dask_address, dask_workers=dask_workers
        ),
        description="Evolve the seed folder into its dataset; seeds evolved before are answered from the run's cache.",
        tags=["evol"],
        limit=1,  # one run at a time: a night that overruns must not start a second writer on the same folder
        # the module path works wherever evol is installed, whatever this process's working directory
        entrypoint_type=EntrypointType.MODULE_PATH,
    )
