"""``python -m evol dedup``: drop exact and near-duplicate rows of a dataset, keeping its format and fields."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from evol.config import api_key_from_env
from evol.dedup.files import dedup_file, file_kind
from evol.dedup.index import SCORERS, Deduper
from evol.errors import ConfigError, InputError
from evol.llm.embeddings import Embedder
from evol.rundir.store import is_remote, local_or_url, staged_file
from evol.seeds import SUFFIXES


def add_parser(sub) -> None:
    p = sub.add_parser(
        "dedup",
        help="remove exact and near-duplicate rows from a dataset",
        description="Remove exact and near-duplicate instructions from a dataset in any format the seed reader "
        "accepts (JSON, JSONL, CSV, TSV, Parquet, TXT). The kept rows are written unchanged in the "
        "input's format; every removal is logged next to OUT (OUT's name with .removed.jsonl) "
        "with the row it duplicates, the rule and the score. The first copy is the one kept.",
    )
    p.add_argument("file", metavar="FILE", help="dataset to deduplicate, a path or a URL")
    p.add_argument(
        "--out", required=True, help="where to write the kept rows, a path or a URL (same extension as FILE)"
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=0.9,
        help="similarity at or above which rows are duplicates, 0-1 (default 0.9)",
    )
    p.add_argument("--scorer", choices=list(SCORERS), default="ratio", help="rapidfuzz scorer (default ratio)")
    p.add_argument("--shingle", type=int, default=4, help="character n-gram length for candidate search (default 4)")
    p.add_argument(
        "--compare",
        choices=("instruction", "instruction+output"),
        default="instruction",
        help="what is compared (default instruction)",
    )
    p.add_argument("--instruction-field", help="field holding the instruction, for shapes not recognised on their own")
    p.add_argument("--input-field", help="field holding an input appended to the instruction")
    g = p.add_argument_group("semantic dedup (off unless --embeddings-url is given)")
    g.add_argument(
        "--embeddings-url",
        help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1 (key from EVOL_API_KEY or OPENAI_API_KEY)",
    )
    g.add_argument(
        "--embeddings-model", default="text-embedding-3-small", help="embedding model (default text-embedding-3-small)"
    )
    g.add_argument(
        "--cosine",
        type=float,
        default=0.95,
        help="cosine similarity at or above which rows are duplicates (default 0.95)",
    )
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    src, out = local_or_url(args.file), local_or_url(args.out)
    _check_options(args, src, out)
    embed = None
    if args.embeddings_url:
        key = api_key_from_env()
        embed = Embedder(args.embeddings_url, args.embeddings_model, api_key=key.get_secret_value() if key else None)
    deduper = Deduper(args.threshold, args.scorer, shingle=args.shingle, embed=embed, cosine=args.cosine)
    # at a URL, the file is read from a local copy and the kept rows (and the removal log) are written to one
    with staged_file(src) as local_src, staged_file(out, write=True) as local_out:
        summary = dedup_file(
            local_src,
            local_out,
            deduper,
            compare=args.compare,
            instruction_field=args.instruction_field,
            input_field=args.input_field,
            name=src if is_remote(src) else None,
        )
    if is_remote(out):
        summary |= {"out": out, "removed_log": f"{out.rpartition('/')[0]}/{Path(summary['removed_log']).name}"}
    print(json.dumps(summary), file=sys.stdout)
    return 0


def _check_options(args: argparse.Namespace, where: str, out_where: str) -> None:
    src, out = Path(where), Path(out_where)  # for a URL only its suffix is looked at here
    if not 0 < args.threshold <= 1:
        raise ConfigError(f"--threshold takes a similarity between 0 and 1, e.g. 0.9; got {args.threshold:g}.")
    if not 0 < args.cosine <= 1:
        raise ConfigError(f"--cosine takes a similarity between 0 and 1, e.g. 0.95; got {args.cosine:g}.")
    if args.shingle < 1:
        raise ConfigError(f"--shingle takes a positive n-gram length, e.g. 4; got {args.shingle}.")
    if is_remote(where):
        pass  # the store says whether it is there (staged_file), once the options are known to be good
    elif src.is_dir():
        raise InputError(f"{src} is a folder; dedup takes one dataset file.")
    elif not src.exists():
        raise InputError(f"Dataset file {src} does not exist.")
    if src.suffix.lower() not in SUFFIXES:
        raise InputError(f"Dataset file {src} has an unknown type; use one of {', '.join(SUFFIXES)}.")
    if file_kind(out.suffix) != file_kind(src.suffix):
        raise ConfigError(
            f"--out must end in {src.suffix} like the input, since the kept rows keep the input's format."
        )
