"""A small OpenAI-compatible server on 127.0.0.1 whose answers a Python function scripts.

It speaks real HTTP, so the openai SDK is exercised end to end (its httpx2 transport cannot be patched
by httpx mocks). Tests start it in a thread; benchmarks run it in its own process. It also serves the
Batch API (files and batches): each line of a batch goes through the same script as a chat request.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Self

from aiohttp import web

from evol.testing.replies import (
    Reply,
    Script,
    bag_of_words,
    batch_object,
    batch_response,
    completion,
    echo,
    file_object,
    last_user,
)

# Reply and last_user stay importable from here: the tests and benchmarks that script this server use them
__all__ = ["Reply", "ScriptedServer", "last_user"]


class ScriptedServer:
    """``with ScriptedServer(script) as srv:`` then point a client at ``srv.base_url``."""

    def __init__(
        self,
        script: Script = echo,
        *,
        models: tuple[str, ...] = ("scripted-model",),
        port: int = 0,
        require_key: str | None = None,
        batch_api: bool = True,
        record: bool = True,
    ):
        self.script = script
        self.record = record  # keep every request body (tests read them); a benchmark's million calls should not
        self.models = models
        self.port = port
        self.require_key = require_key
        self.requests: list[dict] = []  # every chat request body, in arrival order
        self.arrivals: list[float] = []  # time.monotonic() of each chat request
        self.calls: Counter[str] = Counter()  # by path
        self.auth_headers: list[str] = []
        self.embedding_requests: list[dict] = []  # every /v1/embeddings body (bag_of_words vectors answer it)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        # --- the Batch API
        self.batch_api = batch_api  # False: no /v1/files or /v1/batches routes (an endpoint without batches)
        self.files: dict[str, dict] = {}  # id -> {"meta": FileObject fields, "data": bytes}
        self.batches: dict[str, dict] = {}  # id -> Batch fields, plus "n" (1-based order) and "polls"
        self.batch_polls = 1  # retrievals a batch answers "in_progress" to before it finishes
        self.batch_hold = False  # True keeps every batch in progress, e.g. while a test kills the client
        #: how a batch ends: "completed", "expired" or "cancelled" (only the first half of its lines run,
        #: the rest get batch_expired / batch_cancelled in the error file) or "failed" (no line runs)
        self.batch_fate: Callable[[dict], str] = lambda batch: "completed"
        self.batch_sent: list[tuple[str, str]] = []  # (batch id, custom_id) of each line of each batch created

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        if self.batch_api:
            app.router.add_post("/v1/files", self._file_create)
            app.router.add_get("/v1/files/{id}", self._file_get)
            app.router.add_get("/v1/files/{id}/content", self._file_content)
            app.router.add_post("/v1/batches", self._batch_create)
            app.router.add_get("/v1/batches", self._batch_list)
            app.router.add_get("/v1/batches/{id}", self._batch_get)
            app.router.add_post("/v1/batches/{id}/cancel", self._batch_cancel)
        return app

    async def _models(self, request: web.Request) -> web.Response:
        self._count("models")
        if (denied := self._check_key(request)) is not None:
            return denied
        return web.json_response(
            {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "evol"} for m in self.models]}
        )

    def _check_key(self, request: web.Request) -> web.Response | None:
        auth = request.headers.get("Authorization", "")
        with self._lock:
            if self.record:
                self.auth_headers.append(auth)
        if self.require_key is not None and auth != f"Bearer {self.require_key}":
            return web.json_response(
                {
                    "error": {
                        "message": "Incorrect API key provided.",
                        "type": "invalid_request_error",
                        "code": "invalid_api_key",
                    }
                },
                status=401,
            )
        return None

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        with self._lock:
            self.calls["chat"] += 1
            if self.record:
                self.requests.append(body)
                self.arrivals.append(time.monotonic())
        if (denied := self._check_key(request)) is not None:
            return denied
        reply = await self._scripted(body)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.drop:
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)
        if reply.body is not None:
            return web.Response(
                body=reply.body, status=reply.status, headers=reply.headers, content_type="application/json"
            )
        if reply.status != 200:
            return web.json_response(
                {"error": {"message": reply.content or "error", "type": "server_error"}},
                status=reply.status,
                headers=reply.headers,
            )
        return web.json_response(completion(body, reply), headers=reply.headers)

    async def _scripted(self, body: dict) -> Reply:
        reply = self.script(body)
        if asyncio.iscoroutine(reply):  # a script may wait, e.g. to stall until a test kills the client
            reply = await reply
        return Reply(content=reply) if isinstance(reply, str) else reply

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        self._count("embeddings")
        self.embedding_requests.append(body)
        if (denied := self._check_key(request)) is not None:
            return denied
        data = [{"object": "embedding", "index": i, "embedding": bag_of_words(t)} for i, t in enumerate(body["input"])]
        return web.json_response({"object": "list", "data": data[::-1], "model": body.get("model", "")})  # any order

    # --- the Batch API: files up and down, batches created, listed, polled, cancelled

    def _count(self, what: str) -> None:
        with self._lock:
            self.calls[what] += 1

    def _new_file(self, data: bytes, filename: str, purpose: str) -> dict:
        with self._lock:
            file_id = f"file-{len(self.files) + 1:06d}"
            meta = file_object(file_id, len(data), filename, purpose)
            self.files[file_id] = {"meta": meta, "data": data}
        return meta

    async def _file_create(self, request: web.Request) -> web.Response:
        self._count("files.create")
        if (denied := self._check_key(request)) is not None:
            return denied
        form = await request.post()
        upload, purpose = form.get("file"), form.get("purpose")
        if not isinstance(upload, web.FileField) or purpose not in ("batch", "fine-tune", "assistants", "user_data"):
            return _error(400, "Upload a file as 'file' with a valid 'purpose'.")
        return web.json_response(self._new_file(upload.file.read(), upload.filename or "upload", str(purpose)))

    async def _file_get(self, request: web.Request) -> web.Response:
        self._count("files.retrieve")
        if (denied := self._check_key(request)) is not None:
            return denied
        f = self.files.get(request.match_info["id"])
        return web.json_response(f["meta"]) if f else _error(404, f"No such File object: {request.match_info['id']}")

    async def _file_content(self, request: web.Request) -> web.Response:
        self._count("files.content")
        if (denied := self._check_key(request)) is not None:
            return denied
        f = self.files.get(request.match_info["id"])
        if f is None:
            return _error(404, f"No such File object: {request.match_info['id']}")
        return web.Response(body=f["data"], content_type="application/octet-stream")

    async def _batch_create(self, request: web.Request) -> web.Response:
        self._count("batches.create")
        if (denied := self._check_key(request)) is not None:
            return denied
        body = await request.json()
        f = self.files.get(body.get("input_file_id", ""))
        if f is None:
            return _error(404, f"No such File object: {body.get('input_file_id')}")
        if body.get("endpoint") != "/v1/chat/completions" or body.get("completion_window") != "24h":
            return _error(400, "This server batches /v1/chat/completions with completion_window 24h only.")
        lines = [json.loads(x) for x in f["data"].decode("utf-8").splitlines() if x.strip()]
        with self._lock:
            batch_id = f"batch_{len(self.batches) + 1:06d}"
            batch = batch_object(batch_id, body["input_file_id"], len(lines), body.get("metadata"))
            self.batches[batch_id] = {**batch, "n": len(self.batches) + 1, "polls": 0}
            self.batch_sent.extend((batch_id, line.get("custom_id", "")) for line in lines)
        return web.json_response(_public(self.batches[batch_id]))

    async def _batch_list(self, request: web.Request) -> web.Response:
        self._count("batches.list")
        if (denied := self._check_key(request)) is not None:
            return denied
        newest_first = sorted(self.batches.values(), key=lambda b: b["n"], reverse=True)
        after = request.query.get("after")
        if after in self.batches:
            newest_first = [b for b in newest_first if b["n"] < self.batches[after]["n"]]
        limit = int(request.query.get("limit", 20))
        page = [_public(b) for b in newest_first[:limit]]
        return web.json_response(
            {
                "object": "list",
                "data": page,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
                "has_more": len(newest_first) > limit,
            }
        )

    async def _batch_get(self, request: web.Request) -> web.Response:
        self._count("batches.retrieve")
        if (denied := self._check_key(request)) is not None:
            return denied
        b = self.batches.get(request.match_info["id"])
        if b is None:
            return _error(404, f"No such Batch object: {request.match_info['id']}")
        with self._lock:
            b["polls"] += 1
        if b["status"] == "cancelling":
            await self._finish(b, "cancelled")
        elif b["status"] == "in_progress" and not self.batch_hold and b["polls"] >= self.batch_polls:
            await self._finish(b, self.batch_fate(b))
        return web.json_response(_public(b))

    async def _batch_cancel(self, request: web.Request) -> web.Response:
        self._count("batches.cancel")
        if (denied := self._check_key(request)) is not None:
            return denied
        b = self.batches.get(request.match_info["id"])
        if b is None:
            return _error(404, f"No such Batch object: {request.match_info['id']}")
        if b["status"] in ("validating", "in_progress"):
            b.update(status="cancelling", cancelling_at=int(time.time()))
        return web.json_response(_public(b))

    async def _finish(self, b: dict, fate: str) -> None:
        """Run the batch's lines through the script (all, or the first half of an expired or cancelled one)."""
        now = int(time.time())
        if fate == "in_progress":
            return
        if fate == "failed":
            b.update(
                status="failed",
                failed_at=now,
                errors={
                    "object": "list",
                    "data": [
                        {
                            "code": "invalid_request",
                            "message": "The batch failed validation (scripted).",
                            "param": None,
                            "line": None,
                        }
                    ],
                },
            )
            return
        lines = [
            json.loads(x) for x in self.files[b["input_file_id"]]["data"].decode("utf-8").splitlines() if x.strip()
        ]
        run = lines if fate == "completed" else lines[: len(lines) // 2]
        out: list[dict] = []
        err: list[dict] = []
        for i, line in enumerate(run):
            body = line["body"]
            with self._lock:
                self.calls["batch_request"] += 1
                if self.record:
                    self.requests.append(body)
                    self.arrivals.append(time.monotonic())
            status, resp = batch_response(body, await self._scripted(body))
            row = {
                "id": f"batch_req_{b['n']}_{i}",
                "custom_id": line["custom_id"],
                "response": {"status_code": status, "request_id": f"req_{b['n']}_{i}", "body": resp},
                "error": None,
            }
            (out if status == 200 else err).append(row)
        code = "batch_expired" if fate == "expired" else "batch_cancelled"
        for i, line in enumerate(lines[len(run) :], start=len(run)):
            err.append(
                {
                    "id": f"batch_req_{b['n']}_{i}",
                    "custom_id": line["custom_id"],
                    "response": None,
                    "error": {"code": code, "message": f"This request was not executed: the batch is {fate}."},
                }
            )
        if out:
            b["output_file_id"] = self._new_file(_jsonl(out), f"{b['id']}_output.jsonl", "batch_output")["id"]
        if err:
            b["error_file_id"] = self._new_file(_jsonl(err), f"{b['id']}_error.jsonl", "batch_output")["id"]
        b["request_counts"] = {"total": len(lines), "completed": len(out), "failed": len(err)}
        b.update(status=fate, finalizing_at=now, **{f"{fate}_at": now})

    def batch_count(self) -> int:
        with self._lock:
            return self.calls["batch_request"]

    # --- running in a thread, for tests
    def __enter__(self) -> Self:
        ready = threading.Event()

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._runner = web.AppRunner(self.app(), access_log=None)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", self.port)
            self._loop.run_until_complete(site.start())
            self.port = self._runner.addresses[0][1]  # the free port the OS chose
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


def _public(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k not in ("n", "polls")}


def _jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode("utf-8")


def _error(status: int, message: str) -> web.Response:
    return web.json_response(
        {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}, status=status
    )


def main() -> None:
    """``python -m evol.testing.server --port 8000``: an echo server for trying configs offline."""
    import argparse

    p = argparse.ArgumentParser(description="A scripted OpenAI-compatible server that echoes the last user message.")
    p.add_argument("--port", type=int, default=8000)
    port = p.parse_args().port
    web.run_app(ScriptedServer(echo, port=port).app(), host="127.0.0.1", port=port, access_log=None)


if __name__ == "__main__":
    main()
