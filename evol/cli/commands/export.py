"""``python -m evol export``: finished runs to a training-ready folder in one of its formats (instruction data or preference pairs)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys

from evol.errors import ConfigError
from evol.output.formats import NAMES
from evol.output.selection import COSINE_DEFAULT, GROUPS, RATIO_DEFAULT, Choice, parse_quota
from evol.quality.scoring import ORDERS
from evol.rundir.store import RUN_SKIP, is_remote, local_or_url, staged_folder


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export",
        help="write a run's dataset in a training format (alpaca, jsonl, sharegpt, openai-chat, vicuna, parquet, hf, dpo, preference-chat)",
        description="Write the kept rows of one or more runs into a folder: data files in the chosen format, a dataset "
        "card README.md, and export.json. Several runs are merged; an instruction in more than one is kept once.",
    )
    p.add_argument(
        "runs", nargs="+", metavar="RUN_DIR", help="run folder(s) written by 'python -m evol run' (a path or a URL)"
    )
    p.add_argument("--format", dest="fmt", choices=NAMES, default="alpaca", help="output format (default alpaca)")
    p.add_argument("--out", required=True, help="folder to write, a path or a URL (new, empty, or an earlier export)")
    g = p.add_argument_group("split")
    g.add_argument(
        "--val-fraction",
        type=float,
        default=0.0,
        help="share of rows for a validation split, whole seed lineages at a time (default 0: train only)",
    )
    g.add_argument("--seed", type=int, default=0, help="random seed of the split (default 0)")
    g = p.add_argument_group("selection")
    g.add_argument(
        "--round",
        action="append",
        metavar="N[,N]",
        help="export only these rounds (repeatable or comma-separated; 0 is the seeds)",
    )
    g.add_argument(
        "--operation",
        action="append",
        metavar="OP[,OP]",
        help="export only evolutions made by these operations (repeatable or comma-separated)",
    )
    g.add_argument("--profile", action="append", metavar="NAME", help="use only runs of this profile (repeatable)")
    g.add_argument("--min-words", type=int, help="leave out instructions with fewer words")
    g.add_argument("--max-words", type=int, help="leave out instructions with more words")
    seeds = g.add_mutually_exclusive_group()
    seeds.add_argument(
        "--include-seeds",
        dest="seeds",
        action="store_true",
        default=None,
        help="export the seeds the runs put in their datasets (every run but one with --no-seeds), whatever --round says",
    )
    seeds.add_argument("--no-seeds", dest="seeds", action="store_false", help="leave the seed rows out")
    g = p.add_argument_group("choosing by scores (run 'python -m evol score' first)")
    g.add_argument(
        "--select",
        dest="k",
        type=int,
        metavar="K",
        help="the best K rows by --by, skipping any too similar to a row already taken",
    )
    g.add_argument(
        "--by", choices=ORDERS, default="complexity*quality", help="the score to rank by (default complexity*quality)"
    )
    g.add_argument(
        "--max-similarity",
        type=float,
        metavar="S",
        help=f"skip a row this similar (0-1) to one taken: rapidfuzz ratio (default {RATIO_DEFAULT:g}), or with "
        f"--embeddings-url the cosine of embeddings (default {COSINE_DEFAULT:g}, measured on a sentence-embedding "
        "model; calibrate for yours with bench/similarity.py)",
    )
    g.add_argument(
        "--embeddings-url",
        help="OpenAI-compatible endpoint for similarity by embeddings (key from EVOL_API_KEY or OPENAI_API_KEY)",
    )
    g.add_argument(
        "--embeddings-model", default="text-embedding-3-small", help="embedding model (default text-embedding-3-small)"
    )
    g.add_argument(
        "--min-complexity", type=float, metavar="N", help="leave out rows whose instruction scored below N (1-10)"
    )
    g.add_argument("--min-quality", type=float, metavar="N", help="leave out rows whose answer scored below N (1-10)")
    g.add_argument(
        "--balance", choices=GROUPS, help="give each round or operation an equal share of K, as far as its rows allow"
    )
    g.add_argument(
        "--quota",
        action="append",
        metavar="FIELD:VALUE=N",
        help="at most N rows of a round or operation, e.g. operation:deepen=2000 or round:1=0.25 (a share of K); repeatable",
    )
    g = p.add_argument_group("chat formats")
    g.add_argument(
        "--system",
        help="a system message to put first in every sharegpt / openai-chat / vicuna / preference-chat conversation "
        "that has none of its own",
    )
    g = p.add_argument_group("preference formats (dpo, preference-chat)")
    g.add_argument(
        "--min-margin",
        type=float,
        default=1.0,
        help="keep a pair only where the best candidate's score beats the worst's by at least this (default 1)",
    )
    p.set_defaults(func=main)


def _items(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def _rounds(values: list[str] | None) -> frozenset[int] | None:
    items = _items(values)
    if items is None:
        return None
    try:
        return frozenset(int(v) for v in items)
    except ValueError:
        raise ConfigError(f"--round takes whole numbers, e.g. --round 1,2; got {', '.join(values or [])}.") from None


def main(args: argparse.Namespace) -> int:
    from evol.output.export import ExportOptions, export
    from evol.output.rows import RowFilter

    for name in ("min_words", "max_words"):
        if getattr(args, name) is not None and getattr(args, name) < 0:
            raise ConfigError(f"--{name.replace('_', '-')} must not be negative.")
    ops = _items(args.operation)
    row_filter = RowFilter(
        rounds=_rounds(args.round),
        operations=frozenset(ops) if ops else None,
        profiles=frozenset(args.profile) if args.profile else None,
        min_words=args.min_words,
        max_words=args.max_words,
        seeds=args.seeds,
    )
    choice = Choice(
        k=args.k,
        by=args.by,
        min_complexity=args.min_complexity,
        min_quality=args.min_quality,
        balance=args.balance,
        quotas=tuple(parse_quota(q) for q in args.quota or ()),
        max_similarity=args.max_similarity,
        embeddings_url=args.embeddings_url,
        embeddings_model=args.embeddings_model,
    )
    opts = ExportOptions(
        fmt=args.fmt,
        val_fraction=args.val_fraction,
        seed=args.seed,
        system=args.system,
        row_filter=row_filter,
        choice=choice,
        min_margin=args.min_margin,
    )
    if is_remote(args.out) and local_or_url(args.out) in map(local_or_url, args.runs):
        raise ConfigError("--out must not be the run folder itself; name a new folder, e.g. RUN_DIR/export.")
    with contextlib.ExitStack() as stack:  # a run or the export at a URL: worked on in a local copy
        runs = {stack.enter_context(staged_folder(r, skip=RUN_SKIP)): r for r in args.runs}
        out = stack.enter_context(staged_folder(args.out, write=True))
        summary = export(list(runs), out, opts, where=[local_or_url(r) for r in args.runs])
    print(
        json.dumps(
            {
                "out": local_or_url(args.out),
                "format": summary["format"],
                "rows": summary["rows"],
                "files": summary["files"],
            }
        ),
        file=sys.stdout,
    )
    return 0
