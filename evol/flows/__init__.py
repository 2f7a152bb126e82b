"""Prefect orchestration of evol: the pipeline as flows, resumable per chunk, on threads or on Dask.

The core (``evol``) never imports this package; ``python -m evol run`` and ``serve`` reach it through
``evol.flows.run_with_prefect`` and ``evol.flows.serving.serve``. The flow itself is ``evol.flows.evol_flow.evol_flow``
(not re-exported here: the name would hide the module of the same name).
"""

from .evol_flow import run_with_prefect

__all__ = ["run_with_prefect"]
