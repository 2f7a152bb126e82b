"""A small OpenAI-compatible server on 127.0.0.1 whose answers a Python function scripts.

It speaks real HTTP, so the openai SDK is exercised end to end (its httpx2 transport cannot be patched
by httpx mocks). Tests start it in a thread; benchmarks run it in its own process.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


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


Script = Callable[[dict], "Reply | str"]


def last_user(request: dict) -> str:
    msgs = [m for m in request.get("messages", []) if m.get("role") == "user"]
    return msgs[-1]["content"] if msgs else ""


def echo(request: dict) -> Reply:
    return Reply(content=f"Echo: {last_user(request)[:200]}")


class ScriptedServer:
    """``with ScriptedServer(script) as srv:`` then point a client at ``srv.base_url``."""

    def __init__(self, script: Script = echo, *, models: tuple[str, ...] = ("scripted-model",), port: int = 0,
                 require_key: str | None = None):
        self.script = script
        self.models = models
        self.port = port
        self.require_key = require_key
        self.requests: list[dict] = []  # every chat request body, in arrival order
        self.arrivals: list[float] = []  # time.monotonic() of each chat request
        self.calls = Counter()  # by path
        self.auth_headers: list[str] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        return app

    async def _models(self, request: web.Request) -> web.Response:
        with self._lock:
            self.calls["models"] += 1
        if (denied := self._check_key(request)) is not None:
            return denied
        return web.json_response({"object": "list", "data": [{"id": m, "object": "model", "owned_by": "evol"} for m in self.models]})

    def _check_key(self, request: web.Request) -> web.Response | None:
        auth = request.headers.get("Authorization", "")
        with self._lock:
            self.auth_headers.append(auth)
        if self.require_key is not None and auth != f"Bearer {self.require_key}":
            return web.json_response({"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error",
                                                "code": "invalid_api_key"}}, status=401)
        return None

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        with self._lock:
            self.calls["chat"] += 1
            self.requests.append(body)
            self.arrivals.append(time.monotonic())
        if (denied := self._check_key(request)) is not None:
            return denied
        reply = self.script(body)
        if asyncio.iscoroutine(reply):  # a script may wait, e.g. to stall until a test kills the client
            reply = await reply
        if isinstance(reply, str):
            reply = Reply(content=reply)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.drop:
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)
        if reply.body is not None:
            return web.Response(body=reply.body, status=reply.status, headers=reply.headers, content_type="application/json")
        if reply.status != 200:
            return web.json_response({"error": {"message": reply.content or "error", "type": "server_error"}},
                                     status=reply.status, headers=reply.headers)
        return web.json_response(completion(body, reply), headers=reply.headers)

    # --- running in a thread, for tests
    def __enter__(self) -> "ScriptedServer":
        ready = threading.Event()

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._runner = web.AppRunner(self.app(), access_log=None)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", self.port)
            self._loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]  # the free port the OS chose
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._runner.cleanup())
            self._loop.close()

        self._thread = threading.Thread(target=serve, name="scripted-openai-server", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("scripted server did not start")
        return self

    def __exit__(self, *exc) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def chat_count(self) -> int:
        with self._lock:
            return self.calls["chat"]


def completion(request: dict, reply: Reply) -> dict[str, Any]:
    prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in request.get("messages", []))
    content = reply.content
    choices = []
    if reply.choices:
        choices = [{"index": 0, "message": {"role": "assistant", "content": content},
                    "finish_reason": reply.finish_reason, "logprobs": None}]
    return {
        "id": f"chatcmpl-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", "scripted-model"),
        "choices": choices,
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len((content or "").split()),
                  "total_tokens": prompt_tokens + len((content or "").split())},
    }


def main() -> None:
    """``python -m evol.testing.server --port 8000``: an echo server for trying configs offline."""
    import argparse

    p = argparse.ArgumentParser(description="A scripted OpenAI-compatible server that echoes the last user message.")
    p.add_argument("--port", type=int, default=8000)
    args = p.parse_args()
    srv = ScriptedServer(echo, port=args.port)
    web.run_app(srv.app(), host="127.0.0.1", port=args.port, access_log=None)


if __name__ == "__main__":
    main()
