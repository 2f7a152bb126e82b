"""The ``evol`` flow, as ``prefect.yaml``'s deployments name it (``flows/evol_flow.py:evol_flow``).

Prefect loads a file entrypoint as a loose module, and a task defined in such a module cannot be imported by a
Dask worker. So this file only imports the flow from the package: every task stays importable wherever evol is
installed.
"""

from evol.engines.prefect.evol_flow import evol_flow

__all__ = ["evol_flow"]
