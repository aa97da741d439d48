"""The one retry loop of the worker: exponential backoff around an async call.

Used by the batch stages (a few attempts, then the batch is dead-lettered), the recommendations
publisher (until the broker takes the batch) and the topic followers (until a topic's metadata
shows up). A plain function rather than tenacity: it sits on the per-batch path and must cost
nothing when the first attempt succeeds.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["Backoff", "retry"]

T = TypeVar("T")


class Backoff:
    """Delays ``first, first * factor, ...``, each at most ``cap`` seconds.

    Args:
        first: The first delay in seconds.
        factor: Growth per retry.
        cap: Largest delay.
    """

    def __init__(self, first: float = 0.1, factor: float = 2.0, cap: float = math.inf) -> None:
        if first < 0 or factor < 1 or cap < 0:
            raise ValueError(f"invalid backoff first={first} factor={factor} cap={cap}")
        self.first = first
        self.factor = factor
        self.cap = cap

    def delay(self, retry: int) -> float:
        """The delay before retry number ``retry`` (1-based)."""
        return float(min(self.first * self.factor ** (retry - 1), self.cap))


async def retry(
    call: Callable[[], Awaitable[T]],
    *,
    attempts: int | None,
    backoff: Backoff,
    retry_on: tuple[type[BaseException], ...] = (Exception,),
    on_retry: Callable[[int, BaseException, float], None] | None = None,
) -> T:
    """Await ``call()`` until it succeeds, sleeping with backoff between attempts.

    Args:
        call: Makes one attempt (a fresh awaitable per call).
        attempts: Most attempts in all, or None for no limit.
        backoff: The delays between attempts.
        retry_on: Exceptions that are retried; any other propagates at once.
        on_retry: Called as ``on_retry(retry_number, exception, delay)`` before each sleep
            (logging, metrics).

    Returns:
        The first successful result.

    Raises:
        The last exception, once ``attempts`` attempts have failed.
    """
    if attempts is not None and attempts < 1:
        raise ValueError(f"attempts must be at least 1, not {attempts}")
    failures = 0
    while True:
        try:
            return await call()
        except retry_on as exc:
            failures += 1
            if attempts is not None and failures >= attempts:
                raise
            delay = backoff.delay(failures)
            if on_retry is not None:
                on_retry(failures, exc, delay)
            await asyncio.sleep(delay)
