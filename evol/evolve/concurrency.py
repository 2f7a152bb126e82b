"""Items of a round with bounded concurrency: what both engines schedule a round's work through."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


async def bounded_map(
    fn: Callable[[T], Awaitable[R]],
    items: Sequence[T],
    workers: int,
    on_done: Callable[[R], None] | None = None,
    collect: bool = True,
) -> list:
    """``fn`` over ``items`` with at most ``workers`` at once; results in input order (none unless ``collect``:
    then ``on_done`` alone sees each, and none is held after it).

    The first error stops the handing out of new items; items already under way finish (their answers are
    paid for and cached), then the error is raised.
    """
    results: list = [None] * len(items) if collect else []
    next_index = 0
    errors: list[BaseException] = []

    async def worker() -> None:
        nonlocal next_index
        while next_index < len(items) and not errors:
            i = next_index
            next_index += 1
            try:
                out = await fn(items[i])
            except Exception as exc:
                errors.append(exc)
                return
            if collect:
                results[i] = out
            if on_done is not None:
                on_done(out)

    tasks = [asyncio.ensure_future(worker()) for _ in range(min(workers, len(items)))]
    try:
        await asyncio.gather(*tasks)
    except BaseException:  # cancelled or interrupted: nothing more will be awaited
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    if errors:
        raise errors[0]
    return results
