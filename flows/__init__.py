"""Prefect orchestration of evol: the pipeline as flows, resumable per batch, on threads or on Dask.

The core (``evol``) never imports this package; ``python -m evol run`` and ``serve`` reach it through
:func:`run_with_prefect` and :data:`evol_flow`.
"""

from .evol_flow import evol_flow, pipeline_flow, run_with_prefect

__all__ = ["evol_flow", "pipeline_flow", "run_with_prefect"]
