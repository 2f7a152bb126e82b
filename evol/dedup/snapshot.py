"""The byte format of a dedup index snapshot (``Deduper.snapshot``): a JSON head and raw arrays, no pickle."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

_MAGIC = b"evol-dedup-snapshot-1\n"


def pack(head: dict, **fields: np.ndarray | Sequence[str]) -> bytes:
    """``head`` (JSON) and ``fields`` (numpy arrays, or lists of strings as UTF-8 and their end offsets), one after
    another: no pickle, so a snapshot read from a shared store runs no code."""
    blobs: list[bytes] = []
    layout = []
    for name, value in fields.items():
        if isinstance(value, np.ndarray):
            arr = np.ascontiguousarray(value)
            layout.append([name, arr.dtype.str, list(arr.shape)])
            blobs.append(arr.tobytes())
        else:
            encoded = [s.encode("utf-8") for s in value]
            ends = np.cumsum([len(b) for b in encoded], dtype=np.int64) if encoded else np.empty(0, np.int64)
            layout.append([name, "str", [len(encoded)]])
            blobs += [ends.tobytes(), b"".join(encoded)]
    sizes = [len(b) for b in blobs]
    meta = json.dumps({"head": head, "layout": layout, "sizes": sizes}, sort_keys=True).encode()
    return b"".join([_MAGIC, len(meta).to_bytes(8, "little"), meta, *blobs])


def unpack(data: bytes) -> tuple[dict, dict[str, np.ndarray], dict[str, list[str]]]:
    """``pack``'s head, arrays and lists of strings back; ValueError if ``data`` is not what it wrote."""
    if not data.startswith(_MAGIC):
        raise ValueError("not a dedup index snapshot")
    at = len(_MAGIC) + 8
    size = int.from_bytes(data[len(_MAGIC) : at], "little")
    meta = json.loads(data[at : at + size])
    at += size
    parts = []
    for n in meta["sizes"]:
        parts.append(data[at : at + n])
        at += n
    if at != len(data):
        raise ValueError("a dedup index snapshot of the wrong length")
    blobs = iter(parts)
    arrays: dict[str, np.ndarray] = {}
    strings: dict[str, list[str]] = {}
    for name, dtype, shape in meta["layout"]:
        if dtype == "str":
            ends, text = np.frombuffer(next(blobs), np.int64).tolist(), next(blobs)
            strings[name] = [text[a:b].decode("utf-8") for a, b in zip([0, *ends][:-1], ends, strict=True)]
        else:  # a copy: the index may grow its arrays in place
            arrays[name] = np.frombuffer(next(blobs), np.dtype(dtype)).reshape(shape).copy()
    return meta["head"], arrays, strings
