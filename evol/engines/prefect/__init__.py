"""Prefect orchestration of evol: the pipeline as flows, resumable per chunk, on threads or on Dask.

The core (``evol``) never imports this package; ``python -m evol run`` and ``serve`` reach it through
``evol.engines.prefect.run_with_prefect`` and ``evol.engines.prefect.serving.serve``. The flow itself is ``evol.engines.prefect.evol_flow.evol_flow``
(not re-exported here: the name would hide the module of the same name).

Importing the package imports no Prefect (``run_with_prefect`` is loaded on first use): the CLI starts Prefect's
temporary server (``evol.engines.prefect.server.launch``) before it pays for Prefect's own import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from evol.engines.prefect.evol_flow import run_with_prefect

__all__ = ["run_with_prefect"]


def __getattr__(name: str) -> Any:
    if name == "run_with_prefect":
        from evol.engines.prefect.evol_flow import run_with_prefect

        return run_with_prefect
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
