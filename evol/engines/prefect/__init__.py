"""The Prefect engine: the round loop's chunks as Prefect tasks, resumable per chunk, on threads or on Dask.

The core never imports this package; ``python -m evol run`` and ``serve`` import ``evol_flow.run_with_prefect``
and ``serving.serve`` when they need them, after the CLI started Prefect's temporary server (``server.launch``),
so that the server boots while the run pays for Prefect's own import. ``prefect.yaml``'s deployments name the
flow through ``flows/evol_flow.py`` at the top of the repository.
"""
