"""``python -m evol dedup``: drop exact and near-duplicate rows of a dataset, keeping its format and fields."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from ..config import api_key_from_env
from ..dedup import SCORERS, Deduper, Embedder
from ..errors import ConfigError, InputError
from ..rundir import atomic_path, atomic_write, write_jsonl
from ..seeds import SUFFIXES, read_rows

_JSONL = (".jsonl", ".ndjson")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "dedup", help="remove exact and near-duplicate rows from a dataset",
        description="Remove exact and near-duplicate instructions from a dataset in any format the seed reader "
                    "accepts (JSON, JSONL, CSV, TSV, Parquet, TXT). The kept rows are written unchanged in the "
                    "input's format; every removal is logged next to OUT (OUT's name with .removed.jsonl) "
                    "with the row it duplicates, the rule and the score. The first copy is the one kept.",
    )
    p.add_argument("file", type=Path, metavar="FILE", help="dataset to deduplicate")
    p.add_argument("--out", type=Path, required=True, help="where to write the kept rows (same extension as FILE)")
    p.add_argument("--threshold", type=float, default=0.9, help="similarity at or above which rows are duplicates, 0-1 (default 0.9)")
    p.add_argument("--scorer", choices=list(SCORERS), default="ratio", help="rapidfuzz scorer (default ratio)")
    p.add_argument("--shingle", type=int, default=4, help="character n-gram length for candidate search (default 4)")
    p.add_argument("--compare", choices=("instruction", "instruction+output"), default="instruction",
                   help="what is compared (default instruction)")
    p.add_argument("--instruction-field", help="field holding the instruction, for shapes not recognised on their own")
    p.add_argument("--input-field", help="field holding an input appended to the instruction")
    g = p.add_argument_group("semantic dedup (off unless --embeddings-url is given)")
    g.add_argument("--embeddings-url", help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1 (key from EVOL_API_KEY or OPENAI_API_KEY)")
    g.add_argument("--embeddings-model", default="text-embedding-3-small", help="embedding model (default text-embedding-3-small)")
    g.add_argument("--cosine", type=float, default=0.95, help="cosine similarity at or above which rows are duplicates (default 0.95)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    src, out = args.file, args.out
    _check_options(args)
    rows = list(read_rows(src, instruction_field=args.instruction_field, input_field=args.input_field))
    texts = [r.instruction if args.compare == "instruction" else f"{r.instruction}\n{r.output or ''}" for r in rows]

    embed = None
    if args.embeddings_url:
        key = api_key_from_env()
        embed = Embedder(args.embeddings_url, args.embeddings_model, api_key=key.get_secret_value() if key else None)
    deduper = Deduper(args.threshold, args.scorer, shingle=args.shingle, embed=embed, cosine=args.cosine)
    matches = deduper.dedup([str(i) for i in range(len(rows))], texts)

    kept = [i for i, m in enumerate(matches) if m is None]
    removed = []
    for i, m in enumerate(matches):
        if m is not None:
            j = int(m.duplicate_of)
            removed.append({"row": i + 1, "id": rows[i].given_id, "where": rows[i].where,
                            "duplicate_of_row": j + 1, "duplicate_of_id": rows[j].given_id,
                            "rule": m.rule, "score": m.score})
    _write_kept(src, out, kept, len(rows))
    sidecar = out.with_name(out.stem + ".removed.jsonl")
    write_jsonl(sidecar, removed)
    counts = Counter(r["rule"] for r in removed)
    print(json.dumps({"out": str(out), "removed_log": str(sidecar), "rows": len(rows), "kept": len(kept),
                      **{rule: counts[rule] for rule in ("exact_duplicate", "near_duplicate", "semantic_duplicate")}}),
          file=sys.stdout)
    return 0


def _check_options(args: argparse.Namespace) -> None:
    src, out = args.file, args.out
    if not 0 < args.threshold <= 1:
        raise ConfigError(f"--threshold takes a similarity between 0 and 1, e.g. 0.9; got {args.threshold:g}.")
    if not 0 < args.cosine <= 1:
        raise ConfigError(f"--cosine takes a similarity between 0 and 1, e.g. 0.95; got {args.cosine:g}.")
    if args.shingle < 1:
        raise ConfigError(f"--shingle takes a positive n-gram length, e.g. 4; got {args.shingle}.")
    if src.is_dir():
        raise InputError(f"{src} is a folder; dedup takes one dataset file.")
    if not src.exists():
        raise InputError(f"Dataset file {src} does not exist.")
    if src.suffix.lower() not in SUFFIXES:
        raise InputError(f"Dataset file {src} has an unknown type; use one of {', '.join(SUFFIXES)}.")
    if _kind(out.suffix) != _kind(src.suffix):
        raise ConfigError(f"--out must end in {src.suffix} like the input, since the kept rows keep the input's format.")


def _kind(suffix: str) -> str:
    suffix = suffix.lower()
    return ".jsonl" if suffix in _JSONL else suffix


def _write_kept(src: Path, out: Path, kept: list[int], total: int) -> None:
    """Write the kept records of ``src`` to ``out`` as they were: lines verbatim, table rows and JSON items as read."""
    suffix = src.suffix.lower()
    if suffix in (".csv", ".tsv"):
        import pandas as pd  # imported here: slow to import, and only tables need it

        sep = "\t" if suffix == ".tsv" else ","
        df = pd.read_csv(src, sep=sep, dtype=str, keep_default_na=False)
        _same_count(src, len(df), total)
        atomic_write(out, [df.iloc[kept].to_csv(index=False, sep=sep)])
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(src)
        _same_count(src, table.num_rows, total)
        with atomic_path(out) as tmp:
            pq.write_table(table.take(kept), tmp)
    elif suffix == ".json" and (data := _json_or_none(src)) is not None:
        if isinstance(data, dict):  # {"data": [...]}: keep the wrapper
            key = next(k for k, v in data.items() if isinstance(v, list))
            items = data[key]
            data = {**data, key: [items[i] for i in kept]}
        else:
            items = data
            data = [items[i] for i in kept]
        _same_count(src, len(items), total)
        atomic_write(out, [json.dumps(data, ensure_ascii=False, indent=2), "\n"])
    else:  # TXT, JSONL (and JSONL named .json): one record per non-blank line
        lines = [line for line in src.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
        _same_count(src, len(lines), total)
        atomic_write(out, [lines[i] + "\n" for i in kept])


def _json_or_none(src: Path) -> Any:
    """The parsed JSON document, or None for JSONL named .json (the reader accepts both)."""
    try:
        return json.loads(src.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":
            return None
        raise


def _same_count(src: Path, found: int, expected: int) -> None:
    if found != expected:  # the reader and the writer must see the same records, or rows would be mismatched
        raise InputError(f"{src} holds {found} records but {expected} rows were read; re-save it as plain JSONL.")
