"""Where a run's chunk tasks run: two threads of this process by default, or a Dask cluster."""

from __future__ import annotations

from prefect.task_runners import ThreadPoolTaskRunner

from evol.errors import ConfigError

#: chunk tasks at once on the default runner: two, so one chunk's slow tail overlaps the next one's start
THREADS = 2


def task_runner(dask_address: str | None = None, dask_workers: int | None = None):
    """The task runner for the chunks, how many chunks it runs at once and in how many processes."""
    if dask_address and dask_workers:
        raise ConfigError("Give --dask-address or --dask-workers, not both.")
    if not (dask_address or dask_workers):
        return ThreadPoolTaskRunner(max_workers=THREADS), THREADS, 1
    try:
        import distributed
        from prefect_dask import DaskTaskRunner
    except ImportError:
        raise ConfigError("Running on Dask needs prefect-dask: pip install 'evol[dask]'.") from None
    if dask_workers:
        # one thread per worker process: a chunk keeps its worker busy with its own event loop
        kwargs = {"n_workers": dask_workers, "threads_per_worker": 1, "processes": True, "dashboard_address": None}
        return DaskTaskRunner(cluster_kwargs=kwargs), dask_workers, dask_workers
    with distributed.Client(dask_address, timeout=30) as client:
        threads = client.nthreads()
    return DaskTaskRunner(address=dask_address), max(1, sum(threads.values())), max(1, len(threads))


def on_threads() -> bool:
    """Whether the running flow's tasks run on threads of this process (their parameters are not shipped)."""
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    return ctx is not None and isinstance(ctx.task_runner, ThreadPoolTaskRunner)
