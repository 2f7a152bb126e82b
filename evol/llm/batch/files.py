"""The Batch API's files: a call as a line of an input file, and the lines of output and error files read back as
each request's answer or error, classified like the same answer or error from a direct call."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

from evol.errors import BackendError
from evol.llm.client import Redactor, error_for_status, error_message, parse_completion
from evol.models import Completion

log = logging.getLogger("evol")

ENDPOINT = "/v1/chat/completions"
#: OpenAI's limits for one batch input file are 50,000 requests and 200 MB; stay a little under the size
MAX_REQUESTS = 50_000
MAX_BYTES = 190 * 1024 * 1024

#: what a batch did with one request: its answer, its error, or None when the batch ended before running it
LineResult = Completion | BackendError | None


def input_line(key: bytes, body: dict[str, Any]) -> bytes:
    """One request as a line of a batch input file; its ``custom_id`` is the call's cache key."""
    line = {"custom_id": key.hex(), "method": "POST", "url": ENDPOINT, "body": body}
    return (json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def read_lines(text: str, file_id: str) -> list[dict[str, Any]]:
    """The lines of a downloaded output or error file; an unreadable one is skipped (its call goes out again)."""
    out = []
    for raw in text.splitlines():
        if not raw.strip():
            continue
        try:
            out.append(json.loads(raw))
        except json.JSONDecodeError:  # its call stays unanswered and goes into the next batch
            log.warning("batch: skipped an unreadable line of %s", file_id)
    return out


def outcomes(lines: list[dict[str, Any]], model: str, redact: Redactor) -> Iterator[tuple[bytes, LineResult]]:
    """Each line's call key and outcome; a line without a readable ``custom_id`` belongs to no call."""
    for line in lines:
        try:
            key = bytes.fromhex(line["custom_id"])
        except (KeyError, TypeError, ValueError):
            continue
        resp = line.get("response") or {}
        if resp.get("status_code") == 200:
            try:
                answer, _ = parse_completion(resp.get("body") or {}, model)
            except BackendError as exc:
                yield key, exc
                continue
            yield key, answer
        elif resp.get("status_code"):
            yield key, request_error(resp["status_code"], resp.get("body"), redact)
        else:  # never run: the batch expired or was cancelled first
            yield key, None


def request_error(status: int, body: Any, redact: Redactor) -> BackendError:
    """One request's error in a batch, classified like the same error from a direct call."""
    return error_for_status(status, redact(error_message(body, f"HTTP {status}")))


def batch_errors(b: Any) -> str:
    """Why a batch failed, from its first few errors."""
    data = getattr(getattr(b, "errors", None), "data", None) or []
    return "; ".join(e.message or e.code or "" for e in data[:3])
