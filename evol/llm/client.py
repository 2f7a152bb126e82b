"""Chat-completion clients: the OpenAI-compatible one, with retries, and the error mapping in one place."""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import re
import time
from collections.abc import Sequence
from typing import Any, Protocol

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from evol.config import Sampling
from evol.errors import (
    BackendError,
    FatalBackendError,
    RateLimitedError,
    RequestRejectedError,
    TransientBackendError,
)
from evol.llm.adaptive import AdaptiveLimit
from evol.llm.endpoint import call_headroom, endpoint_identity, has_aiohttp, sdk_client
from evol.llm.ratelimit import RateLimiter, estimate_tokens
from evol.models import Completion, Usage

Messages = list[dict[str, str]]


class ChatModel(Protocol):
    """What the pipeline needs from a backend; the OpenAI client, the cache and test fakes all provide it."""

    identity: str

    async def complete(self, messages: Messages, *, model: str, sampling: Sampling, sample: str) -> Completion: ...

    async def aclose(self) -> None: ...


class Redactor:
    """Removes a secret (and anything shaped like an API key) from text shown to users."""

    _KEYLIKE = re.compile(r"\b(sk|pk|rk|key)-[A-Za-z0-9_\-*]{6,}")

    def __init__(self, secret: str | None):
        self._secret = secret or None

    def __call__(self, text: str) -> str:
        if self._secret:
            text = text.replace(self._secret, "***")
        return self._KEYLIKE.sub(r"\1-***", text)


def map_openai_error(exc: BaseException, redact: Redactor) -> BackendError:
    """Turn any exception of the openai SDK into evol's hierarchy: the only place that knows the SDK's types."""
    import openai

    if isinstance(exc, BackendError):
        return exc
    status = getattr(exc, "status_code", None)
    retry_after = _retry_after(getattr(getattr(exc, "response", None), "headers", None))
    message = redact(_short(exc))
    if isinstance(exc, openai.APIConnectionError):  # APITimeoutError included
        refused = _chain_find(exc, ConnectionError) or _dropped(exc)
        if refused is not None:  # the aiohttp transport reports a refused or dropped connection as a timeout
            return TransientBackendError(f"connection failed: {redact(_short(refused))}")
        if isinstance(exc, openai.APITimeoutError) or _chain_find(exc, TimeoutError) is not None:
            return TransientBackendError(f"the request timed out ({message})")
        return TransientBackendError(f"connection failed: {redact(_cause(exc))}")
    if isinstance(exc, openai.APIResponseValidationError):
        return TransientBackendError(f"the endpoint sent a malformed response: {message}", status=status)
    if isinstance(exc, openai.APIStatusError):
        return error_for_status(exc.status_code, message, retry_after)
    if isinstance(exc, openai.OpenAIError):
        return TransientBackendError(f"backend error: {message}")
    if isinstance(exc, (ValueError, KeyError, TypeError)):  # undecodable bodies surface as these
        return TransientBackendError(f"the endpoint sent a malformed response: {redact(_short(exc))}")
    raise exc


def error_for_status(status: int, message: str, retry_after: float | None = None) -> BackendError:
    """evol's error for an HTTP error status: the one classifier, for direct calls and Batch API result lines."""
    if status == 429:
        return RateLimitedError(f"rate limited (HTTP 429): {message}", status=429, retry_after=retry_after)
    if status == 401:
        return FatalBackendError(
            "the endpoint refused the API key (HTTP 401); check EVOL_API_KEY or OPENAI_API_KEY", status=401
        )
    if status == 403:
        return FatalBackendError(f"the endpoint denied access (HTTP 403): {message}", status=403)
    if status == 404:
        return FatalBackendError(
            f"not found (HTTP 404): {message.rstrip('.')}; check --base-url and --model", status=404
        )
    if status >= 500 or status in (408, 409, 425):
        return TransientBackendError(f"server error (HTTP {status}): {message}", status=status, retry_after=retry_after)
    return RequestRejectedError(f"the endpoint rejected the request (HTTP {status}): {message}", status=status)


def error_message(body: Any, fallback: str) -> str:
    """The message of an error body (``{"error": {"message": …}}``), else ``fallback``; at most 300 characters."""
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:300]
    return fallback.splitlines()[0][:300] if fallback.strip() else fallback


def request_body(model: str, messages: Messages, sampling: Sampling, seed: int | None = None) -> dict:
    """The body of one chat-completions request, sent directly or as a Batch API line."""
    body = {
        "model": model,
        "messages": messages,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_tokens": sampling.max_tokens,
    }
    if seed is not None:
        body["seed"] = seed
    return body


def parse_completion(data: Any, model: str) -> tuple[Completion, int]:
    """A chat completion's JSON (direct or from a Batch API output line) as a Completion, and the total tokens the
    endpoint counted; TransientBackendError for valid JSON that is not a completion."""
    try:
        choices = data.get("choices")
        if not choices:
            raise TransientBackendError("the endpoint answered with no choices")
        choice = choices[0]
        message = choice.get("message") or {}
        text = message.get("content")
        if text is not None and not isinstance(text, str):
            raise TypeError(f"content is {type(text).__name__}, not text")
        usage = data.get("usage") or {}
        prompt_tokens, completion_tokens = (
            int(usage.get("prompt_tokens") or 0),
            int(usage.get("completion_tokens") or 0),
        )
        total = int(usage.get("total_tokens") or prompt_tokens + completion_tokens)
        finish_reason = choice.get("finish_reason")
        answered_by = data.get("model") or model
    except (AttributeError, TypeError, ValueError, IndexError) as exc:
        raise TransientBackendError(f"the endpoint sent a malformed response: {_short(exc)}") from None
    completion = Completion(
        text=_valid_unicode(text or ""),
        finish_reason=finish_reason,
        model=str(answered_by),
        usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens),
    )
    return completion, total


def _short(exc: BaseException) -> str:
    return error_message(getattr(exc, "body", None), str(exc).strip() or type(exc).__name__)


def _chain_find(exc: BaseException, kind: type) -> BaseException | None:
    seen = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        if isinstance(link, kind):
            return link
        seen.add(id(link))
        link = link.__cause__ or link.__context__
    return None


def _dropped(exc: BaseException) -> BaseException | None:
    """aiohttp's own error for a connection the server closed without answering, if that is the cause."""
    if not has_aiohttp():
        return None
    import aiohttp

    found = _chain_find(exc, aiohttp.ClientConnectionError)
    return None if isinstance(found, TimeoutError) else found


def _cause(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    return _short(cause) if cause else _short(exc)


def _retry_after(headers: Any) -> float | None:
    if not headers:
        return None
    try:
        if headers.get("retry-after-ms"):
            return float(headers["retry-after-ms"]) / 1000
        value = headers.get("retry-after")
        if not value:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class RetryWait:
    """Exponential backoff with jitter; when the server says how long to wait (Retry-After), exactly that."""

    def __init__(self, max_wait: float):
        self._exp = wait_exponential_jitter(initial=1, max=max_wait, jitter=1)

    def __call__(self, state) -> float:
        exc = state.outcome.exception() if state.outcome else None
        hint = getattr(exc, "retry_after", None)
        if hint is not None:  # the server knows when it can take the request again, as the openai SDK assumes
            return hint
        return self._exp(state)


def transient_retries(max_retries: int, wait: RetryWait) -> AsyncRetrying:
    """Tenacity's loop for one backend call: retry evol's transient errors, then raise the last one."""
    return AsyncRetrying(
        stop=stop_after_attempt(max_retries + 1),
        retry=retry_if_exception(lambda e: isinstance(e, BackendError) and e.transient),
        wait=wait,
        reraise=True,
    )


class OpenAIChat:
    """Any OpenAI-compatible chat-completions endpoint, through the openai SDK's async client."""

    def __init__(
        self,
        base_url: str | None,
        api_key: str | None,
        *,
        identity: str | None = None,
        timeout: float = 120.0,
        max_retries: int = 6,
        concurrency: int = 32,
        max_wait: float = 60.0,
        rpm: float | None = None,
        tpm: float | None = None,
        rate_window: float = 60.0,
        seed_calls: bool = False,
        replicas: Sequence[str] = (),
        adaptive: bool = False,
    ):
        import httpx2  # the SDK's HTTP library, whatever the transport

        self._client = sdk_client(base_url, api_key, timeout=timeout, concurrency=concurrency)
        # other servers of the same endpoint (the embedded model's, one per core): each call goes to the one with
        # the fewest calls in flight, so every server works; answers are the same from any of them
        self.replicas = tuple(replicas)
        self._servers = [self._client] + [
            sdk_client(url, api_key, timeout=timeout, concurrency=concurrency) for url in self.replicas
        ]
        self._in_flight = [0] * len(self._servers)
        self.served = [0] * len(self._servers)  # calls each server answered
        self._raw_response = httpx2.Response
        self.base_url = str(self._client.base_url).rstrip("/")
        self.identity = identity or endpoint_identity(self.base_url)
        self.redact = Redactor(api_key)
        self.limiter = RateLimiter(rpm, tpm, rate_window)
        # adaptive: ``concurrency`` is the most the limit may reach, and the limit alone holds requests back (the
        # connector, sized to the maximum, never does); fixed: a semaphore, with headroom for the SDK's own work
        self.gate = AdaptiveLimit(concurrency) if adaptive else None
        self._sem = asyncio.Semaphore(concurrency + call_headroom(concurrency, rpm, tpm))
        self._max_retries = max_retries
        self._wait = RetryWait(max_wait)
        self._last_ok = time.monotonic()  # when a call last got an answer, for the circuit breaker
        self._dead: FatalBackendError | None = None  # set once the endpoint is found gone for good
        self.seed_calls = seed_calls  # send each call's own sampling seed (see call_seed)

    async def list_models(self) -> list[str]:
        try:
            page = await self._client.models.list()
            return [m.id for m in page.data]
        except Exception as exc:
            raise map_openai_error(exc, self.redact) from None

    async def complete(self, messages: Messages, *, model: str, sampling: Sampling, sample: str) -> Completion:
        retrying = transient_retries(self._max_retries, self._wait)
        started = time.monotonic()
        try:
            async for attempt in retrying:
                with attempt:
                    answer = await self._once(messages, model, sampling, sample)
                    self._last_ok = time.monotonic()
                    return answer
        except TransientBackendError as exc:
            # the circuit breaker: when nothing has answered for as long as this call kept retrying and the
            # endpoint no longer answers at all, every later call would fail the same way after all its
            # retries; stop the run instead (it resumes from the call cache)
            if self._dead is None and self._last_ok < started and await self._endpoint_down():
                self._dead = FatalBackendError(
                    f"The endpoint at {self.base_url} stopped answering ({exc}); the work done so far is saved, "
                    f"run the same command again to resume once it is back."
                )
            if self._dead is not None:
                raise self._dead from None
            raise
        raise AssertionError("unreachable")

    async def _endpoint_down(self) -> bool:
        """Whether the endpoint is unreachable or broken as a whole (its model list fails too), not just for one call."""
        import openai

        try:
            await self._client.with_options(max_retries=0).models.list()
        except openai.APIConnectionError:
            return True
        except openai.APIStatusError as exc:
            return exc.status_code >= 500
        except Exception:  # an answer we cannot read is still an answer
            return False
        return False

    async def _once(self, messages: Messages, model: str, sampling: Sampling, sample: str = "") -> Completion:
        if self._dead is not None:  # another call found the endpoint gone: fail at once, no retries
            raise self._dead
        body = request_body(model, messages, sampling, call_seed(sample) if self.seed_calls else None)
        if self.gate is not None:
            return await self._gated(self.gate, body, messages, model, sampling)
        async with self._sem:
            # the limiter is passed inside the semaphore, right before sending, so the windows are exact
            handle = await self.limiter.acquire(estimate_tokens(messages, sampling.max_tokens))
            try:
                data = await self._post(body)
            except RateLimitedError as err:
                self.limiter.pause(err.retry_after if err.retry_after is not None else 1.0)
                raise
        return self._completion(data, model, handle)

    async def _post(self, body: dict) -> Any:
        """One request to the server with the fewest in flight; an error comes back mapped (``map_openai_error``)."""
        server = min(range(len(self._servers)), key=self._in_flight.__getitem__)
        self._in_flight[server] += 1
        try:
            # the SDK's documented low-level call with the raw response: its typed create() spends ~1 ms
            # of CPU per call transforming the request and building models we would read three fields of
            raw = await self._servers[server].post("/chat/completions", body=body, cast_to=self._raw_response)
            self.limiter.observe(raw.headers)
            data = json.loads(raw.content)
        except Exception as exc:
            raise map_openai_error(exc, self.redact) from None
        finally:
            self._in_flight[server] -= 1
        self.served[server] += 1
        return data

    async def _gated(
        self, gate: AdaptiveLimit, body: dict, messages: Messages, model: str, sampling: Sampling
    ) -> Completion:
        """``_once`` under the adaptive limit: each answer's latency, or its 429 or 503, moves the limit."""
        ticket = await gate.acquire()
        seconds: float | None = None
        status: int | None = None
        try:
            handle = await self.limiter.acquire(estimate_tokens(messages, sampling.max_tokens))
            sent = time.monotonic()
            try:
                data = await self._post(body)
            except BackendError as err:
                status = err.status
                if err.status in (429, 503) and err.retry_after is not None:
                    self.limiter.pause(err.retry_after)  # the server said how long: every request waits that long
                # without Retry-After, the lower limit is the answer to a 429 (no pause of the whole client)
                raise
            seconds = time.monotonic() - sent
            return self._completion(data, model, handle)
        finally:
            gate.release(ticket, seconds, status)

    def _completion(self, data: Any, model: str, handle) -> Completion:
        try:
            completion, total = parse_completion(data, model)
        except TransientBackendError as exc:
            raise TransientBackendError(self.redact(str(exc))) from None
        self.limiter.settle(handle, total)
        return completion

    async def aclose(self) -> None:
        for client in self._servers:
            await client.close()


def call_seed(sample: str) -> int:
    """The sampling seed of one call, from its sample id: the same call samples the same answer in any run.

    Without it llama.cpp draws each request's seed from one generator in arrival order, so concurrent
    calls got different answers from run to run. 31 bits: -1 and 0xFFFFFFFF mean "random" to llama.cpp.
    """
    return int.from_bytes(hashlib.sha256(sample.encode("utf-8")).digest()[:4], "big") & 0x7FFFFFFF


_SURROGATE = re.compile("[\ud800-\udfff]")


def _valid_unicode(text: str) -> str:
    """A JSON body may carry lone surrogates (\\ud800), which no file or database can store: U+FFFD instead."""
    return _SURROGATE.sub("\ufffd", text)
