"""Choosing the backend for a run: a given endpoint, OpenAI with a key, or the embedded local model."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TypedDict

from evol.config import RunConfig
from evol.errors import ConfigError, FatalBackendError, TransientBackendError
from evol.llm.client import OpenAIChat
from evol.llm.local import server as local
from evol.llm.local import setup as local_setup
from evol.models import Models

log = logging.getLogger("evol")

DEFAULT_OPENAI_MODEL = "gpt-4o-mini"


class ChatOptions(TypedDict):
    """The keyword options of OpenAIChat (and LocalChat) that a run's config decides."""

    identity: str | None
    timeout: float
    max_retries: int
    concurrency: int
    adaptive: bool
    rpm: float | None
    tpm: float | None
    rate_window: float
    seed_calls: bool


def check_batch(config: RunConfig) -> None:
    """``--batch`` needs an endpoint with the Batch API: say so before anything starts."""
    if config.batch and local_setup.uses_embedded_model(config):
        raise ConfigError(
            "--batch sends calls to the OpenAI Batch API, which the embedded local model does not have: "
            "set OPENAI_API_KEY (or --base-url of an endpoint with batches), or run without --batch."
        )


@contextlib.asynccontextmanager
async def open_backend(config: RunConfig) -> AsyncIterator[tuple[OpenAIChat, Models, RunConfig]]:
    """Yield a ready client, the models to use, and the config adjusted for that backend."""
    async with contextlib.AsyncExitStack() as stack:
        key = config.api_key.get_secret_value() if config.api_key else None
        identity = None
        server = None
        if config.base_url:
            url, what = config.base_url, f"the endpoint at {config.base_url}"
        elif not local_setup.uses_embedded_model(config):
            url, what = None, "the OpenAI API (key from the environment)"
        else:  # the embedded default: no key, no endpoint
            server = stack.enter_context(local.LocalPool.from_config(config))
            replicas = len(server.servers)
            url, identity = server.base_url, server.identity
            what = f"the embedded local model {server.model_name} ({replicas} server{'s' * (replicas > 1)})"
            config = local_setup.tune_for_local(config)
        # the embedded model's answers are a function of the call: each call carries its own sampling seed
        kwargs = ChatOptions(
            identity=identity,
            timeout=config.timeout,
            max_retries=config.max_retries,
            concurrency=config.connections,
            # --batch sends no request of its own through the client's limit: nothing to adapt to
            adaptive=config.adaptive and not config.batch,
            rpm=config.rpm,
            tpm=config.tpm,
            rate_window=config.rate_window,
            seed_calls=server is not None,
        )
        # a dead embedded server stops the run at once instead of every item retrying a closed port
        chat = local.LocalChat(server, url, key, **kwargs) if server else OpenAIChat(url, key, **kwargs)
        stack.push_async_callback(chat.aclose)
        models = await resolve_models(chat, config, url)
        log.info("backend: %s, model %s", what, models.evolve)
        yield chat, models, config


async def resolve_models(chat: OpenAIChat, config: RunConfig, url: str | None) -> Models:
    """Check the endpoint answers before spending anything, and pick a model if none was named."""
    try:
        available = await chat.list_models()
    except TransientBackendError as exc:
        raise FatalBackendError(
            f"Cannot reach {chat.base_url} ({exc}); is the server running and --base-url right?"
        ) from None
    except FatalBackendError as exc:
        if exc.status != 404 or not config.model:  # some endpoints (Azure) have no model list
            raise
        available = []
    model = config.model
    if model is None:
        if url is None:
            model = DEFAULT_OPENAI_MODEL
        elif available:
            model = available[0]
        else:
            raise ConfigError(f"{chat.base_url} lists no models; name one with --model.")
    return Models(evolve=model, respond=config.response_model or model, judge=config.judge_model or model)
