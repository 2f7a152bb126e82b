"""An OpenAI-compatible endpoint as evol connects to it: the SDK client, its pool, loopback and identity."""

from __future__ import annotations

import socket
import urllib.request
from typing import Any
from urllib.parse import urlsplit

_LOOPBACK = ("127.0.0.1", "localhost", "::1")

#: opens URLs on this machine's loopback directly: a proxy from HTTP_PROXY cannot reach them
LOOPBACK_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on now, for a server this process starts."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def call_headroom(concurrency: int, rpm: float | None, tpm: float | None) -> int:
    """Calls allowed in the SDK beyond ``concurrency``, while aiohttp's connector holds the requests on the wire.

    The connector (sized to ``concurrency`` by :func:`sdk_client`) lets at most that many requests be sent and
    unanswered at once; a few more calls may build their request or read their answer meanwhile, so that a
    connection never waits for the SDK's own work (~1 ms a call, longer when the event loop is busy). With
    rpm or tpm limits, a call counted by the limiter must go out at once: no headroom. Without aiohttp the
    SDK's httpx pool is not sized to ``concurrency``: none either.
    """
    if rpm or tpm or not has_aiohttp():
        return 0
    return max(2, concurrency // 8)


def is_loopback(url: str) -> bool:
    return urlsplit(url).hostname in _LOOPBACK


def sdk_client(base_url: str | None, api_key: str | None, *, timeout: float, concurrency: int = 100) -> Any:
    """The openai SDK's async client as evol uses it: aiohttp transport, no SDK retries, no proxy for loopback."""
    import openai

    http_client = None
    # a proxy from HTTP_PROXY cannot reach this machine's loopback: talk to a local server directly
    direct = bool(base_url and is_loopback(base_url))
    if has_aiohttp():
        import httpx2

        # the SDK's default pool keeps 100 connections alive; size it to our concurrency instead
        limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        http_client = openai.DefaultAioHttpClient(limits=limits, trust_env=not direct)
    elif direct:
        http_client = openai.DefaultAsyncHttpxClient(trust_env=False)
    kwargs: dict[str, Any] = dict(
        base_url=base_url,
        api_key=api_key or "no-key",  # local servers need none; the SDK insists on a value
        timeout=timeout,
        max_retries=0,  # tenacity is the one place that retries
    )
    if http_client is not None:
        kwargs["http_client"] = http_client
    return openai.AsyncOpenAI(**kwargs)


def endpoint_identity(base_url: str) -> str:
    """The endpoint as the call cache knows it: a loopback server keeps its identity when its port changes."""
    if is_loopback(base_url):
        return f"loopback{urlsplit(base_url).path.rstrip('/')}"
    return base_url.rstrip("/")


def has_aiohttp() -> bool:
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        return False
    return True
