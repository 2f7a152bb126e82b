"""``python -m evol report``: one self-contained HTML page with plots that shows what a run produced."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys

from evol.rundir.store import RUN_SKIP, is_remote, local_or_url, staged_folder


def add_parser(sub) -> None:
    p = sub.add_parser(
        "report",
        help="write RUN_DIR/report/report.html with plots of what a run produced",
        description="Write a self-contained HTML report (plots embedded, opens offline) and its PNG plots: "
        "the funnel, instruction and response length per round, operation mix, rejection "
        "reasons, lexical diversity, complexity and quality when 'python -m evol score' ran, "
        "and the rows 'evol export --select' chose against all of them. On a folder of "
        "'python -m evol optimize': the development failure rate per step against the "
        "starting method and the baseline profile.",
    )
    p.add_argument(
        "run", metavar="RUN_DIR", help="run folder written by 'python -m evol run' (or 'optimize'), a path or a URL"
    )
    p.add_argument("--out", help="folder for report.html and the PNGs, a path or a URL (default RUN_DIR/report)")
    p.add_argument(
        "--export",
        metavar="FOLDER",
        help="an 'evol export --select' folder to compare the chosen rows with the run's (default RUN_DIR/export)",
    )
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from evol.report.build import build_report

    # at a URL, each folder is worked on in a local copy; the run folder is written only when the report goes there
    into_run = args.out is None
    with contextlib.ExitStack() as stack:
        run = stack.enter_context(staged_folder(args.run, write=into_run, skip=RUN_SKIP))
        out = stack.enter_context(staged_folder(args.out, write=True, pull=False)) if args.out else None
        export = stack.enter_context(staged_folder(args.export)) if args.export else None
        page = build_report(run, out, export)
        where = local_or_url(args.out) if args.out else local_or_url(args.run) + "/report"
        shown = str(page) if not is_remote(where) else f"{where}/{page.name}"
    print(json.dumps({"report": shown}), file=sys.stdout)
    return 0
