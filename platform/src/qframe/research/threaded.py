"""The async half of the seed's ``await``-style APIs: the sync method run in a worker thread.

    class DataCatalog:
        def register_dataset_sync(self, name: str, *, version: str, ...) -> DatasetMetadata: ...
        register_dataset = in_thread(register_dataset_sync)

The async method has exactly the sync method's parameters and result type (checked by mypy), so
the two cannot drift apart; the event loop stays free while the database, lake or broker works.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


def in_thread(sync: Callable[P, R]) -> Callable[P, Coroutine[Any, Any, R]]:
    """An ``async`` function (or method, when assigned in a class body) that awaits ``sync`` in a thread."""

    @functools.wraps(sync)
    async def run(*args: P.args, **kwargs: P.kwargs) -> R:
        return await asyncio.to_thread(sync, *args, **kwargs)

    run.__name__ = sync.__name__.removesuffix("_sync")
    run.__qualname__ = sync.__qualname__.removesuffix("_sync")
    run.__doc__ = f"Async form of ``{sync.__name__}`` (runs in a worker thread).\n\n{sync.__doc__ or ''}".rstrip()
    return run
