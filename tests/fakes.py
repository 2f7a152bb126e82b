"""A scripted in-process chat model for unit tests of the pipeline (end-to-end tests use the HTTP server)."""

from __future__ import annotations

from collections.abc import Callable

from evol.config import Sampling
from evol.models import Completion, Usage


class FakeChat:
    identity = "fake"

    def __init__(self, answer: Callable[[str, str], Completion | str | Exception]):
        self.answer = answer  # (prompt, sample) -> answer
        self.calls: list[tuple[str, str, str]] = []  # (model, sample, prompt)
        self.samplings: list[Sampling] = []  # each call's, in the same order

    async def complete(self, messages, *, model: str, sampling: Sampling, sample: str) -> Completion:
        prompt = messages[-1]["content"]
        self.calls.append((model, sample, prompt))
        self.samplings.append(sampling)
        out = self.answer(prompt, sample)
        if isinstance(out, Exception):
            raise out
        if isinstance(out, str):
            return Completion(
                text=out,
                finish_reason="stop",
                usage=Usage(prompt_tokens=len(prompt.split()), completion_tokens=len(out.split())),
            )
        return out

    async def aclose(self) -> None:
        pass
