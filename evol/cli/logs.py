"""What the command line shows of the logs: Prefect's kept to what a user reads, once Prefect is imported too."""

from __future__ import annotations

import argparse
import logging

from evol.errors import EvolError

_SHOWN_URLS: set[str] = set()


def _quiet_orchestrator(record: logging.LogRecord) -> bool:
    """Keep Prefect's logs to what a user reads: no traceback for an error the CLI reports in one sentence,
    no 'Finished in state' line per task, and each flow run's 'View at' link once (Prefect logs it twice)."""
    if record.exc_info and isinstance(record.exc_info[1], (EvolError, KeyboardInterrupt)):
        return False
    if not record.name.startswith("prefect"):
        return True
    msg = str(record.msg)
    if msg.startswith("View at "):
        if msg in _SHOWN_URLS:
            return False
        _SHOWN_URLS.add(msg)
    return not msg.startswith("Finished in state")


def quiet_orchestrator() -> None:
    """Put the filter on the root logger's handlers; again once Prefect is imported, which may replace them."""
    for handler in logging.getLogger().handlers:
        if _quiet_orchestrator not in handler.filters:
            handler.addFilter(_quiet_orchestrator)


def quiet_prefect(args: argparse.Namespace) -> None:
    """Once Prefect is imported: keep its logging out of the user's terminal unless --verbose (no traceback for an
    error the CLI reports in one sentence), and to warnings under --quiet. Importing Prefect sets its loggers'
    levels from its own settings and can replace the root logger's handlers, with the filter put there before."""
    if args.quiet:
        logging.getLogger("prefect").setLevel(logging.WARNING)
    if not args.verbose:
        quiet_orchestrator()
