"""The OpenAI Batch API behind the ChatModel protocol: calls queue up, leave as batch files, come back later.

``BatchingChat.complete`` queues its request and waits. When no new call has come for a moment (or a file
is full) the queue of each model goes out as one JSONL file: ``/v1/files`` (purpose ``batch``), then
``/v1/batches``. A poller checks the submitted batches every ``batch_poll_seconds``, downloads the output
and error files of finished ones, stores every answer in the run's call cache and wakes the callers.

Spending at most once per completed call, with no idempotency keys on offer:

* the uploaded file and the keys it holds are committed before the batch is created, and the batch id
  right after; only then does the submission count as done. A process killed between the two leaves a
  ``submitting`` row, which the next start settles by finding the batch made from that file in the
  endpoint's batch list (or learning that none was made);
* on a restart, a call whose key belongs to a batch still pending attaches to that batch instead of
  being sent again; answers of every finished batch go into the call cache, awaited or not.

The bookkeeping lives in the run's ``calls.sqlite`` (tables ``batches`` and ``batch_calls``), beside the
answers it turns into: one file holds everything the run has paid for, and copying the run folder
copies both. SQLite in WAL mode lets this second connection write beside the cache's own.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from evol.config import RunConfig, Sampling
from evol.errors import BackendError, FatalBackendError, TransientBackendError
from evol.llm.batch.files import ENDPOINT, MAX_BYTES, MAX_REQUESTS, batch_errors, input_line, outcomes, read_lines
from evol.llm.batch.store import BatchStore, Submission
from evol.llm.cache import CallCache, call_key
from evol.llm.client import Messages, Redactor, RetryWait, map_openai_error, request_body, transient_retries
from evol.llm.endpoint import sdk_client
from evol.models import Completion

log = logging.getLogger("evol")

TERMINAL = frozenset({"completed", "expired", "failed", "cancelled"})


@dataclass(eq=False)
class _Call:
    key: bytes
    model: str
    line: bytes  # the request as a line of a batch input file
    future: asyncio.Future
    file_id: str | None = None  # the submission it is waiting on
    attempts: int = 0  # submissions so far in this process


@dataclass
class _Queue:
    calls: list[_Call] = field(default_factory=list)
    size: int = 0


class BatchingChat:
    """A ChatModel that sends every call through the OpenAI Batch API; see the module docstring."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        identity: str,
        cache: CallCache,
        poll_seconds: float = 30.0,
        idle_seconds: float | None = None,
        timeout: float = 120.0,
        max_retries: int = 6,
        max_wait: float = 60.0,
        max_requests: int = MAX_REQUESTS,
        max_bytes: int = MAX_BYTES,
    ):
        self._client = sdk_client(base_url, api_key, timeout=timeout)
        self.base_url = str(self._client.base_url).rstrip("/")
        self.identity = identity
        self.redact = Redactor(api_key)
        self.cache = cache
        self.store = BatchStore(cache)
        self.poll_seconds = poll_seconds
        # calls of one stage arrive within milliseconds of each other; waiting this long after the last
        # one puts a whole stage in one file at the cost of nothing next to a batch's minutes
        self.idle_seconds = min(1.0, poll_seconds) if idle_seconds is None else idle_seconds
        self.upload_timeout = max(timeout, 600.0)  # a file of up to 200 MB
        self.max_retries = max_retries
        self.max_requests, self.max_bytes = max_requests, max_bytes
        self.stats: Counter = Counter()
        self._wait = RetryWait(max_wait)
        self._calls: dict[bytes, _Call] = {}  # awaited and not yet answered
        self._queues: dict[str, _Queue] = {}  # by model: a batch file holds one model's requests
        self._last_enqueued = 0.0
        self._flusher: asyncio.Task | None = None
        self._poller: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self._given_up: set[str] = set()  # file ids whose batch this process can no longer check

    # --- start and stop

    async def start(self) -> None:
        """Check the endpoint has a Batch API, settle submissions a killed process left unsure, resume polling."""
        try:
            first = await self._api(lambda: self._client.batches.list(limit=100))
        except FatalBackendError as exc:
            if exc.status == 404:
                raise FatalBackendError(
                    f"{self.base_url} has no Batch API (listing batches answered HTTP 404); run without --batch.",
                    status=404,
                ) from None
            raise
        unsure = self.store.with_status("submitting")
        if unsure:
            await self._reconcile(unsure, first)
        pending = self.store.with_status("submitted")
        if pending:
            log.info(
                "batch: %d batches (%d requests) submitted earlier are still pending; their calls wait for them "
                "instead of being sent again",
                len(pending),
                sum(s.requests for s in pending),
            )
            self._ensure_poller()

    async def _reconcile(self, unsure: list[Submission], page: Any) -> None:
        """Files uploaded by a process that died around creating their batch: find that batch, if it exists."""
        by_file: dict[str, Submission | None] = {s.file_id: s for s in unsure}  # None once its batch is found
        oldest = min(s.created for s in unsure) - 600  # clocks differ; a few minutes of slack
        while page is not None:
            for b in page.data:
                if by_file.get(b.input_file_id) is not None:
                    self.store.set(b.input_file_id, "submitted", b.id)
                    by_file[b.input_file_id] = None
                    log.info("batch: found batch %s of a submission the last run did not see through", b.id)
            if not page.data or page.data[-1].created_at < oldest or not page.has_next_page():
                break
            page = await self._api(page.get_next_page)
        for file_id, s in by_file.items():
            if s is not None:  # no batch was made from this file: nothing was sent, nothing is pending
                self.store.set(file_id, "not_created")

    async def aclose(self) -> None:
        """Stop polling and submitting; batches already submitted run on and a later run collects them."""
        tasks = [t for t in (self._flusher, self._poller, *self._tasks) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for call in self._calls.values():
            call.future.cancel()
        self._calls.clear()
        if self.stats:
            log.info("batch: %s", ", ".join(f"{k} {v}" for k, v in sorted(self.stats.items())))
        await self._client.close()
        self.store.close()

    # --- the ChatModel protocol

    async def complete(self, messages: Messages, *, model: str, sampling: Sampling, sample: str) -> Completion:
        key = call_key(self.identity, model, messages, sampling, sample)
        hit = self.cache.get(key)  # a batch may have brought it in since the caller's own cache lookup
        if hit is not None:
            return hit
        call = self._calls.get(key)
        if call is None:
            line = input_line(key, request_body(model, messages, sampling))
            call = _Call(key, model, line, asyncio.get_running_loop().create_future())
            self._calls[key] = call
            sub = self.store.submission_of(key)
            if sub is not None and sub.status == "submitted" and sub.file_id not in self._given_up:
                call.file_id = sub.file_id  # sent by an earlier process: wait for that batch, send nothing
                self.stats["requests_attached_to_earlier_batches"] += 1
                self._ensure_poller()
            else:
                self._enqueue(call)
        return await asyncio.shield(call.future)  # one caller giving up does not withdraw the request

    # --- queue and submit

    def _enqueue(self, call: _Call) -> None:
        call.file_id = None
        q = self._queues.setdefault(call.model, _Queue())
        if q.calls and (len(q.calls) >= self.max_requests or q.size + len(call.line) > self.max_bytes):
            self._spawn(self._submit(call.model, self._take(call.model)))
            q = self._queues.setdefault(call.model, _Queue())
        q.calls.append(call)
        q.size += len(call.line)
        self._last_enqueued = time.monotonic()
        if self._flusher is None or self._flusher.done():
            self._flusher = self._spawn(self._flush_when_idle())

    def _take(self, model: str) -> list[_Call]:
        q = self._queues.pop(model, None)
        return [c for c in q.calls if not c.future.done()] if q else []

    async def _flush_when_idle(self) -> None:
        while any(q.calls for q in self._queues.values()):
            wait = self._last_enqueued + self.idle_seconds - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            for model in list(self._queues):
                if calls := self._take(model):
                    self._spawn(self._submit(model, calls))

    async def _submit(self, model: str, calls: list[_Call]) -> None:
        data = b"".join(c.line for c in calls)
        file_id = None
        try:
            f = await self._api(
                lambda: self._client.files.create(
                    file=("evol-batch.jsonl", data, "application/jsonl"), purpose="batch", timeout=self.upload_timeout
                )
            )
            file_id = f.id
            self.store.add_file(file_id, model, [c.key for c in calls])  # before the batch can exist
            for c in calls:
                c.file_id, c.attempts = file_id, c.attempts + 1
            b = await self._api(
                lambda: self._client.batches.create(
                    input_file_id=file_id, endpoint=ENDPOINT, completion_window="24h", metadata={"created_by": "evol"}
                )
            )
        except BackendError as exc:
            # a failed create may still have made the batch: the row stays "submitting" for the next start
            for c in calls:
                self._resolve(c, error=exc)
            return
        self.store.set(file_id, "submitted", b.id)  # from here on the submission counts as done
        self.stats["batches_submitted"] += 1
        self.stats["requests_submitted"] += len(calls)
        log.info("batch: submitted %s with %d requests for %s", b.id, len(calls), model)
        self._ensure_poller()

    # --- poll and settle

    def _ensure_poller(self) -> None:
        if self._poller is None or self._poller.done():
            self._poller = self._spawn(self._poll())

    async def _poll(self) -> None:
        while True:
            pending = [s for s in self.store.with_status("submitted") if s.file_id not in self._given_up]
            if not pending:
                return
            for sub in pending:
                try:
                    b = await self._api(functools.partial(self._client.batches.retrieve, sub.batch_id))
                    if b.status in TERMINAL:
                        await self._settle(sub, b)
                except BackendError as exc:
                    if not exc.fatal:  # the batch runs on at the endpoint: look again at the next poll
                        log.warning(
                            "batch: could not check %s (%s); trying again in %gs", sub.batch_id, exc, self.poll_seconds
                        )
                        continue
                    self._given_up.add(sub.file_id)
                    if exc.status == 404:  # unknown to this endpoint (deleted, another account): nothing pending
                        log.warning(
                            "batch: %s is unknown to %s; its requests are sent again", sub.batch_id, self.base_url
                        )
                        self.store.set(sub.file_id, "not_found")
                        for c in self._waiting_on(sub.file_id):
                            self._enqueue(c)
                        continue
                    for c in self._waiting_on(sub.file_id):  # a refused key: the run stops, the batch runs on
                        self._resolve(c, error=exc)
            await asyncio.sleep(self.poll_seconds)

    async def _settle(self, sub: Submission, b: Any) -> None:
        """Take in a finished batch: answers into the cache, errors to their callers, the unanswered sent again."""
        lines = []
        for file_id in (b.output_file_id, b.error_file_id):
            if file_id:
                lines.extend(await self._download(file_id))
        # no await from here on: a call that looks the batch up sees it either pending or settled, never between
        unanswered = 0
        for key, outcome in outcomes(lines, sub.model, self.redact):
            call = self._calls.get(key)
            if isinstance(outcome, Completion):
                self.cache.put(key, outcome)
                if call is not None:
                    self._resolve(call, outcome)
            elif outcome is not None:
                self._failed(call, sub.file_id, outcome)
            else:
                unanswered += 1
        self.store.set(sub.file_id, b.status)
        why = batch_errors(b)
        left = self._waiting_on(sub.file_id)
        counts = getattr(b, "request_counts", None)
        log.info(
            "batch: %s %s (%s of %d requests completed)%s",
            b.id,
            b.status,
            counts.completed if counts else "?",
            sub.requests,
            f": {why}" if why else "",
        )
        if left or unanswered:
            self.stats[f"batches_{b.status}"] += 1
        for call in left:  # not in either file, or never run: into the next batch
            self._retry(
                call,
                TransientBackendError(
                    f"batch {b.id} ended {b.status} without answering this request" + (f" ({why})" if why else "")
                ),
            )

    def _failed(self, call: _Call | None, file_id: str, exc: BackendError) -> None:
        if call is None or call.file_id != file_id:
            return  # nobody waits, or the call has moved on to a later submission
        if exc.transient:
            self._retry(call, exc)
        else:
            self._resolve(call, error=exc)

    def _retry(self, call: _Call, exc: BackendError) -> None:
        if call.attempts > self.max_retries:
            self._resolve(call, error=exc)
            return
        self.stats["requests_resubmitted"] += 1
        self._enqueue(call)

    def _waiting_on(self, file_id: str) -> list[_Call]:
        return [c for c in self._calls.values() if c.file_id == file_id]

    def _resolve(self, call: _Call, answer: Completion | None = None, *, error: BaseException | None = None) -> None:
        if self._calls.get(call.key) is call:
            del self._calls[call.key]
        if call.future.done():
            return
        if error is not None:
            call.future.set_exception(error)
        else:
            call.future.set_result(answer)

    async def _download(self, file_id: str) -> list[dict]:
        content = await self._api(lambda: self._client.files.content(file_id, timeout=self.upload_timeout))
        return read_lines(content.text, file_id)

    # --- plumbing

    async def _api(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        """One SDK call, with evol's error mapping and retries of transient failures."""
        async for attempt in transient_retries(self.max_retries, self._wait):
            with attempt:
                try:
                    return await fn()
                except Exception as exc:
                    raise map_openai_error(exc, self.redact) from None
        raise AssertionError("unreachable")

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        # a bug here must stop the run, not leave its callers waiting forever
        exc = task.exception()
        log.error("batch: internal error: %r", exc)
        for call in list(self._calls.values()):
            self._resolve(call, error=exc)


async def open_batching(chat: Any, config: RunConfig, cache: CallCache) -> BatchingChat:
    """The Batch API at ``chat``'s endpoint, ready: checked, and with an earlier run's batches resumed."""
    key = config.api_key.get_secret_value() if config.api_key else None
    batching = BatchingChat(
        chat.base_url,
        key,
        identity=chat.identity,
        cache=cache,
        poll_seconds=config.batch_poll_seconds,
        timeout=config.timeout,
        max_retries=config.max_retries,
    )
    try:
        await batching.start()
    except BaseException:
        await batching.aclose()
        raise
    return batching
