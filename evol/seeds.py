"""Read seed instructions from JSON, JSONL, CSV, Parquet or plain text, recognising the common shapes."""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import json
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evol.errors import InputError
from evol.models import History, Lineage, Rejection, Role, Seed, Turn
from evol.rundir.store import is_remote, local_or_url, staged_file, staged_folder

SUFFIXES = (".json", ".jsonl", ".ndjson", ".csv", ".tsv", ".parquet", ".txt")
_INSTRUCTION_KEYS = ("instruction", "prompt", "question", "query")
_OUTPUT_KEYS = ("output", "response", "answer", "completion")


@dataclass
class SeedSet:
    seeds: list[Seed]
    skipped: list[Rejection] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SourceRow:
    """A seed as found in a file, before ids and checks."""

    instruction: str
    output: str | None
    given_id: str | None
    where: str  # "file:line" for messages
    history: History = ()  # a conversation's turns before ``instruction``


def content_id(instruction: str, history: History = ()) -> str:
    """A stable id from the text itself: the same seed gets the same id in every run (a conversation's from every
    turn, so two conversations that end alike are two seeds)."""
    text = "".join(f"{t.role}\x1f{t.content}\x1e" for t in history) + instruction
    return "s" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


def load_seeds(
    path: str | os.PathLike[str],
    *,
    instruction_field: str | None = None,
    input_field: str | None = None,
    limit: int | None = None,
    max_chars: int | None = None,
) -> SeedSet:
    """Read every seed of a file (or of every supported file in a folder, in name order), local or at an
    s3://, gs:// or az:// URL."""
    where = local_or_url(path)
    if not is_remote(where):
        return _load(Path(where), instruction_field, input_field, limit, max_chars)
    with _staged_seeds(where) as local:
        seedset = _load(local, instruction_field, input_field, limit, max_chars)
    # the files and skip reasons name the URL the user gave, not the temporary copy that was read
    shown = str(local)
    return SeedSet(
        seeds=seedset.seeds,
        skipped=[r.model_copy(update={"detail": r.detail.replace(shown, where)}) for r in seedset.skipped],
        files=[f.replace(shown, where) for f in seedset.files],
    )


@contextlib.contextmanager
def _staged_seeds(url: str) -> Iterator[Path]:
    # a URL that ends in a seed file's suffix names a file; anything else a folder of them (as a local path would)
    if url.lower().endswith(SUFFIXES):
        with staged_file(url) as local:
            yield local
    else:
        with staged_folder(url) as local:
            yield local


def _load(
    path: Path, instruction_field: str | None, input_field: str | None, limit: int | None, max_chars: int | None
) -> SeedSet:
    files = _seed_files(path)
    out = SeedSet(seeds=[], files=[str(f) for f in files])
    seen: dict[str, str] = {}
    for file in files:
        for row in read_rows(file, instruction_field=instruction_field, input_field=input_field):
            if limit is not None and len(out.seeds) >= limit:
                return out
            text = row.instruction.strip()
            broken = _not_unicode(row)
            if broken:
                # a JSON escape such as \\ud800 decodes to text that no file, database or request can carry
                sid = content_id(_printable(text))
                out.skipped.append(
                    _skip(
                        sid,
                        len(out.seeds),
                        "invalid_text",
                        f"{row.where}: the {broken} holds a lone surrogate (a broken \\uXXXX escape)",
                    )
                )
                continue
            sid = row.given_id or content_id(text, row.history)
            key = content_id(text, row.history)
            if sid in seen and seen[sid] != key:
                sid = f"{sid}-{key[1:9]}"
            if not text:
                out.skipped.append(_skip(sid, len(out.seeds), "empty_instruction", f"{row.where}: no instruction text"))
                continue
            if sid in seen:
                out.skipped.append(
                    _skip(sid, len(out.seeds), "duplicate_seed", f"{row.where}: same seed as an earlier row", text)
                )
                continue
            if max_chars is not None and len(text) > max_chars:
                out.skipped.append(
                    _skip(
                        sid,
                        len(out.seeds),
                        "too_long",
                        f"{row.where}: {len(text)} characters, over max_instruction_chars={max_chars}",
                        text,
                    )
                )
                continue
            seen[sid] = key
            out.seeds.append(
                Seed(id=sid, index=len(out.seeds), instruction=text, output=row.output, history=row.history)
            )
    return out


def _not_unicode(row: SourceRow) -> str | None:
    """The first field of ``row`` that is not valid Unicode text (it cannot be encoded as UTF-8), if any."""
    turns = (("turn", t.content) for t in row.history)
    for name, value in (("instruction", row.instruction), ("output", row.output), ("id", row.given_id), *turns):
        if value is not None and _printable(value) != value:
            return name
    return None


def _printable(text: str) -> str:
    return text.encode("utf-8", "replace").decode("utf-8")


def _skip(sid: str, index: int, rule: str, detail: str, text: str | None = None) -> Rejection:
    return Lineage(id=sid, seed_id=sid, seed_index=index).rejected("skipped", rule, detail, "load", instruction=text)


def _seed_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
        if not files:
            raise InputError(f"Seed folder {path} holds no {', '.join(SUFFIXES)} files.")
        return files
    if not path.exists():
        raise InputError(f"Seed file {path} does not exist.")
    if path.suffix.lower() not in SUFFIXES:
        raise InputError(f"Seed file {path} has an unknown type; use one of {', '.join(SUFFIXES)}.")
    return [path]


def read_rows(
    file: Path, *, instruction_field: str | None = None, input_field: str | None = None
) -> Iterator[SourceRow]:
    """The rows of one file in order, with instruction (input appended) and output."""
    suffix = file.suffix.lower()
    if suffix == ".txt":
        for n, line in numbered_lines(file):
            if line.strip():
                yield SourceRow(line.strip(), None, None, f"{file}:{n}")
        return
    if suffix in (".csv", ".tsv", ".parquet"):
        records = _table(file)
    elif suffix == ".json":
        records = _json(file)
    else:
        records = _jsonl(file)
    for where, rec in records:
        yield _row(rec, where, instruction_field, input_field, file)


def _text(file: Path) -> str:
    data = file.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(f"{file}:{line} is not valid UTF-8 (byte {exc.start}); re-save the file as UTF-8.") from None


def _lines(text: str) -> list[str]:
    """Lines end at \\n, \\r\\n or \\r only: str.splitlines would also cut at U+2028, U+0085 and other characters
    that JSON writers (ours included, with ensure_ascii=False) leave unescaped inside strings."""
    return re.split(r"\r\n|\r|\n", text)


def numbered_lines(file: Path) -> Iterator[tuple[int, str]]:
    """(number, line) of a UTF-8 text file as ``_lines`` cuts it (a leading BOM dropped, the lines without their
    ends), read as it goes: a million-row JSONL never exists as one string and a list of its lines. A byte that is
    not UTF-8 raises the message ``_text`` gives, on reaching its line."""
    n, offset = 0, 0  # the lines and bytes before the current one
    with file.open("rb") as f:
        for raw in f:  # cut at b"\n", which no multi-byte UTF-8 sequence holds
            if not n and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]  # _text's byte offsets count from after it too
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                at = offset + exc.start
                raise InputError(f"{file}:{n + 1} is not valid UTF-8 (byte {at}); re-save the file as UTF-8.") from None
            offset += len(raw)
            n += 1
            if "\r" not in line:
                yield n, line[:-1] if line.endswith("\n") else line
                continue
            parts = _lines(line)  # a lone \r ends a line too
            if line.endswith("\n"):
                parts.pop()  # the empty rest after the final \n
            for k, part in enumerate(parts):
                yield n + k, part
            n += len(parts) - 1


def _jsonl(file: Path) -> Iterator[tuple[str, Any]]:
    for n, line in numbered_lines(file):
        if not line.strip():
            continue
        try:
            yield f"{file}:{n}", json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{file}:{n} is not valid JSON ({exc.msg} at column {exc.colno}).") from None


def _json(file: Path) -> Iterator[tuple[str, Any]]:
    text = _text(file)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # a JSONL file named .json
            yield from _jsonl(file)
            return
        raise InputError(f"{file}:{exc.lineno} is not valid JSON ({exc.msg} at column {exc.colno}).") from None
    if isinstance(data, dict):
        # {"data": [...]} and similar wrappers
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise InputError(
                f"{file} holds a JSON object; expected a list of seeds (or an object with one list in it)."
            )
        data = lists[0]
    if not isinstance(data, list):
        raise InputError(f"{file} must hold a JSON list of seeds.")
    for i, rec in enumerate(data):
        yield f"{file}[{i}]", rec


def _table(file: Path) -> Iterator[tuple[str, Any]]:
    import pandas as pd  # imported here: it is slow to import and only tables need it

    try:
        if file.suffix.lower() == ".parquet":
            df = pd.read_parquet(file)
        else:
            df = pd.read_csv(file, sep="\t" if file.suffix.lower() == ".tsv" else ",", dtype=str, keep_default_na=False)
    except UnicodeDecodeError:
        _text(file)  # raises the message naming the line
        raise
    except Exception as exc:  # pandas raises many parser types; all mean the same to a user
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip(".")
        raise InputError(f"{file} could not be read as a table: {reason}.") from None
    first = 2 if file.suffix.lower() != ".parquet" else 1  # CSV line 1 is the header
    for i, rec in enumerate(df.to_dict(orient="records")):
        yield f"{file}:{i + first}", {k: _clean(v) for k, v in rec.items()}


def _clean(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return None
    if hasattr(v, "tolist"):  # numpy arrays from parquet list columns
        return v.tolist()
    return v


def _row(rec: Any, where: str, instruction_field: str | None, input_field: str | None, file: Path) -> SourceRow:
    if isinstance(rec, str):
        return SourceRow(rec, None, None, where)
    if not isinstance(rec, dict):
        raise InputError(f"{where}: expected an object or a string, found {type(rec).__name__}.")
    given_id = rec.get("id")
    given_id = str(given_id) if isinstance(given_id, (str, int)) and str(given_id).strip() else None
    output = _first_str(rec, _OUTPUT_KEYS)

    if instruction_field:
        if instruction_field not in rec:
            raise InputError(f"{where} has no field '{instruction_field}'; its fields are: {', '.join(map(str, rec))}.")
        named = _str(rec[instruction_field])
        extra = _str(rec.get(input_field)) if input_field else _str(rec.get("input"))
        return SourceRow(_join(named, extra), output, given_id, where)

    turns = rec.get("conversations") or rec.get("messages")
    if isinstance(turns, list) and turns:
        return _from_turns(turns, where, given_id)

    instruction = _first_str(rec, _INSTRUCTION_KEYS)
    if instruction is None:
        raise InputError(
            f"{where} has no instruction field; its fields are: {', '.join(map(str, rec)) or 'none'} "
            f"(name one with --instruction-field)."
        )
    extra = _str(rec.get(input_field)) if input_field else _str(rec.get("input"))
    instances = rec.get("instances")
    if not extra and isinstance(instances, list) and instances and isinstance(instances[0], dict):
        # Self-Instruct seed tasks keep the input and output in their first instance
        extra = _str(instances[0].get("input"))
        output = output or _str(instances[0].get("output")) or None
    return SourceRow(_join(instruction, extra), output, given_id, where)


_ASSISTANT: Role = "assistant"
_ROLES: dict[str, Role] = {"human": "user", "user": "user", "system": "system"}
_ROLES |= dict.fromkeys(("gpt", "assistant", "chatgpt", "bard", "model"), _ASSISTANT)


def _from_turns(turns: list, where: str, given_id: str | None) -> SourceRow:
    """ShareGPT (``from``/``value``) or OpenAI chat (``role``/``content``), read whole: the last user turn is the
    instruction, the reply after it the output, and every turn before it (a system message too) the history.
    A one-turn conversation is a single instruction, as before conversations were read whole."""
    read: list[Turn] = []
    for turn in turns:
        if not isinstance(turn, dict):
            continue
        role = _ROLES.get(str(turn.get("from", turn.get("role", ""))).lower())
        text = _str(turn.get("value", turn.get("content"))).strip()
        if role is None or not text:
            continue
        if role == "system" and read:
            raise InputError(f"{where} has a system message after the conversation started; put it first.")
        if read and read[-1].role == role:  # two in a row from one side: one message
            read[-1] = Turn(role=role, content=f"{read[-1].content}\n\n{text}")
            continue
        read.append(Turn(role=role, content=text))
    last_user = max((i for i, t in enumerate(read) if t.role == "user"), default=None)
    if last_user is None:
        raise InputError(f"{where} has a conversation with no human or user turn.")
    reply = read[last_user + 1].content if last_user + 1 < len(read) else None
    return SourceRow(read[last_user].content, reply, given_id, where, tuple(read[:last_user]))


def _first_str(rec: dict, keys: tuple[str, ...]) -> str | None:
    for key in keys:
        if key in rec and rec[key] is not None:
            return _str(rec[key])
    return None


def _str(v: Any) -> str:
    if v is None:
        return ""
    return v if isinstance(v, str) else str(v)


def _join(instruction: str, extra: str) -> str:
    # the method appends a non-empty input to its instruction
    return f"{instruction.rstrip()}\n{extra.strip()}" if extra.strip() else instruction
