"""What a scripted server answers: the Reply a script returns, stock scripts, a reply as the body of a chat
completion or as one line of a batch's output or error file, and the Batch API's File and Batch objects."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Reply:
    """What the server sends for one chat completion."""

    content: str | None = "ok"
    finish_reason: str | None = "stop"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering
    body: str | bytes | None = None  # raw body instead of a completion (malformed JSON, errors)
    choices: bool = True  # False sends an empty choices list
    drop: bool = False  # close the connection without answering


#: a test's script: the reply to one chat request body; an async script may wait before it answers
Script = Callable[[dict], "Reply | str | Coroutine[Any, Any, Reply | str]"]


def last_user(request: dict) -> str:
    msgs = [m for m in request.get("messages", []) if m.get("role") == "user"]
    return msgs[-1]["content"] if msgs else ""


#: the heading before the instruction an evolving prompt asks to rewrite, in every profile's templates but auto's
GIVEN = "#Given Prompt#:\n"


def given_prompt(prompt: str) -> str:
    """The instruction an evolving prompt (one holding GIVEN) asks to rewrite: the text after the heading, up to the
    template's next '#' heading."""
    return prompt.split(GIVEN, 1)[1].rsplit("\n\n#", 1)[0]


def echo(request: dict) -> Reply:
    return Reply(content=f"Echo: {last_user(request)[:200]}")


def bag_of_words(text: str, dims: int = 256) -> list[float]:
    """A deterministic embedding: word counts hashed into ``dims`` buckets (word order and case ignored)."""
    vec = [0.0] * dims
    for word in re.findall(r"\w+", text.casefold()):
        vec[int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "big") % dims] += 1.0
    return vec


def completion(request: dict, reply: Reply) -> dict[str, Any]:
    prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in request.get("messages", []))
    content = reply.content
    choices = []
    if reply.choices:
        choices = [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": reply.finish_reason,
                "logprobs": None,
            }
        ]
    return {
        "id": f"chatcmpl-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", "scripted-model"),
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len((content or "").split()),
            "total_tokens": prompt_tokens + len((content or "").split()),
        },
    }


def batch_response(request: dict, reply: Reply) -> tuple[int, dict]:
    """A scripted reply as one line of a batch's output (status 200) or error file."""
    if reply.drop:
        return 500, {"error": {"message": "The server closed the connection.", "type": "server_error"}}
    if reply.body is not None:
        try:
            return reply.status, json.loads(reply.body)
        except ValueError:
            return 500, {"error": {"message": "The server sent a malformed response.", "type": "server_error"}}
    if reply.status != 200:
        return reply.status, {
            "error": {"message": reply.content or "error", "type": "server_error", "param": None, "code": None}
        }
    return 200, completion(request, reply)


def file_object(file_id: str, size: int, filename: str, purpose: str) -> dict[str, Any]:
    """A File object as ``/v1/files`` shows it, processed at once."""
    return {
        "id": file_id,
        "object": "file",
        "bytes": size,
        "created_at": int(time.time()),
        "filename": filename,
        "purpose": purpose,
        "status": "processed",
        "expires_at": None,
        "status_details": None,
    }


def batch_object(batch_id: str, input_file_id: str, total: int, metadata: Any) -> dict[str, Any]:
    """A new Batch object of ``/v1/chat/completions`` requests, already in progress."""
    now = int(time.time())
    return {
        "id": batch_id,
        "object": "batch",
        "endpoint": "/v1/chat/completions",
        "errors": None,
        "input_file_id": input_file_id,
        "completion_window": "24h",
        "status": "in_progress",
        "output_file_id": None,
        "error_file_id": None,
        "created_at": now,
        "in_progress_at": now,
        "expires_at": now + 86400,
        "finalizing_at": None,
        "completed_at": None,
        "failed_at": None,
        "expired_at": None,
        "cancelling_at": None,
        "cancelled_at": None,
        "request_counts": {"total": total, "completed": 0, "failed": 0},
        "metadata": metadata,
    }
