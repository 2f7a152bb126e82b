"""``python -m evol report``: one self-contained HTML page with plots that shows what a run produced."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


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
        "run", type=Path, metavar="RUN_DIR", help="run folder written by 'python -m evol run' (or 'optimize')"
    )
    p.add_argument("--out", type=Path, help="folder for report.html and the PNGs (default RUN_DIR/report)")
    p.add_argument(
        "--export",
        type=Path,
        metavar="FOLDER",
        help="an 'evol export --select' folder to compare the chosen rows with the run's (default RUN_DIR/export)",
    )
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from evol.report.build import build_report

    page = build_report(args.run, args.out, args.export)
    print(json.dumps({"report": str(page)}), file=sys.stdout)
    return 0
