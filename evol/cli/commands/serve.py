"""``python -m evol serve``: run evol on a schedule (a served Prefect deployment), incrementally."""

from __future__ import annotations

import argparse

from evol.cli.logs import quiet_prefect
from evol.cli.options import add_prefect_options, add_run_options, config_from_args, prefect_kwargs


def add_parser(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="run evol on a schedule through Prefect (e.g. nightly over a growing seed folder)",
        description="Serve the evol flow on a cron or interval schedule until interrupted. Every run writes into "
        "the same run folder, so seeds evolved before are answered from its call cache and only new "
        "seeds cost calls. Needs a Prefect server (PREFECT_API_URL); the API key stays in this "
        "process's environment (EVOL_API_KEY or OPENAI_API_KEY).",
    )
    add_run_options(p)
    g = p.add_argument_group("schedule")
    g.add_argument("--cron", help='cron schedule, e.g. "0 3 * * *" for every night at 03:00')
    g.add_argument("--interval", type=float, help="seconds between runs (instead of --cron)")
    g.add_argument("--timezone", help="IANA time zone of the schedule, e.g. Europe/Paris (default UTC)")
    g.add_argument("--name", default="evol", help="deployment name shown in the Prefect UI (default evol)")
    add_prefect_options(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if config.batch:
        from evol.errors import ConfigError

        raise ConfigError(
            "--batch cannot be served on a schedule yet; schedule `python -m evol run --batch` with cron instead."
        )
    kwargs = prefect_kwargs(args)
    from evol.engines.prefect.serving import serve  # Prefect loads only for the commands that use it

    quiet_prefect(args)  # after the import, which resets Prefect's loggers: --quiet and the filter hold for serve too
    serve(config, cron=args.cron, interval=args.interval, timezone=args.timezone, name=args.name, **kwargs)
    return 0
