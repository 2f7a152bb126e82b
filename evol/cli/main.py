"""The command line: parse, call, map errors to one sentence and an exit code."""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from evol.cli.logs import quiet_orchestrator
from evol.errors import EvolError


def command_modules() -> list[str]:
    """Every module in evol/cli/commands is a subcommand (``serve_local`` becomes ``serve-local``); run first."""
    from evol.cli import commands

    names = sorted(
        m.name for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_")
    )  # _options: shared
    return sorted(names, key=lambda n: n != "run")


def wanted_command(argv: list[str]) -> str | None:
    """The module of the subcommand ``argv`` names, if it names one: only that one's parser is built then, so
    ``evol run`` does not import what ``export``, ``score`` and ``dedup`` need (a few tenths of a second)."""
    word = next((a for a in argv if not a.startswith("-")), None)
    name = word.replace("-", "_") if word else None
    return name if name in command_modules() else None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m evol",
        description="Evol-Instruct data factory: evolve seed instructions into a training dataset.",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log more, and show tracebacks of unexpected errors"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="log only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in [only] if only else command_modules():
        importlib.import_module(f"evol.cli.commands.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(wanted_command(argv))
    args = parser.parse_args(argv)
    level = logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    logging.basicConfig(level=level, format="evol: %(message)s", stream=sys.stderr)
    if args.quiet:  # Prefect sets its own loggers' levels
        logging.getLogger("prefect").setLevel(logging.WARNING)
    if not args.verbose:
        quiet_orchestrator()
    # botocore and aiobotocore (under s3fs) log where they found credentials at INFO, a line per client
    for noisy in ("httpx", "httpx2", "openai", "httpcore", "aiohttp", "distributed", "botocore", "aiobotocore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except EvolError as exc:
        print(f"evol: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("evol: interrupted; run the same command again to resume.", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug of ours: one line for the user, the traceback on request
        if args.verbose:
            raise
        print(f"evol: internal error: {type(exc).__name__}: {exc} (run with -v for the traceback)", file=sys.stderr)
        return 70
