"""The flow for ``prefect.yaml`` deployments, imported under its package name.

Prefect loads a file entrypoint as a loose module; tasks defined in such a module cannot be imported
by Dask workers. Importing the flow from ``evol.flows.evol_flow`` here keeps every task importable anywhere
evol is installed.
"""

from evol.flows.evol_flow import evol_flow

__all__ = ["evol_flow"]
