"""Faust's commit waits until its producer buffer is empty (promptrec.streams.commit_flush)."""

from __future__ import annotations

import asyncio
import types
from collections.abc import Awaitable, Callable
from typing import Any

from faust.transport.producer import ProducerBuffer

from promptrec.streams import commit_flush

# Slower than the 0.1 s Faust's buffer flush waits for a message to leave before it gives up.
SEND_S = 0.15


def _flush_with(flush: Callable[[Any], Awaitable[None]]) -> tuple[list[int], int]:
    """Buffer three table writes whose hand-over takes SEND_S each, flush, return what was sent
    by the time the flush returned and how many the buffer still held."""

    async def scenario() -> tuple[list[int], int]:
        buffer = ProducerBuffer()
        buffer.app = types.SimpleNamespace(conf=types.SimpleNamespace(producer_threaded=False))
        sent: list[int] = []

        async def publish_message(fut: Any, wait: bool = False) -> None:
            await asyncio.sleep(SEND_S)
            sent.append(fut.n)

        channel = types.SimpleNamespace(publish_message=publish_message)
        await buffer.start()
        try:
            for n in range(3):
                buffer.put(
                    types.SimpleNamespace(n=n, message=types.SimpleNamespace(channel=channel))
                )
            await flush(buffer)
            result = list(sent), commit_flush.pending(buffer)
            while commit_flush.pending(buffer):  # let it drain: a stopping buffer must be empty
                await asyncio.sleep(0.01)
            return result
        finally:
            await buffer.stop()

    commit_flush.install()  # before the buffer's sender task starts: it binds _send_pending
    return asyncio.run(scenario())


def test_the_flush_returns_only_when_every_write_is_handed_over() -> None:
    assert _flush_with(commit_flush._flush) == ([0, 1, 2], 0)


def test_fausts_own_flush_gives_up_early() -> None:
    """Why the fix exists; when faust-streaming waits itself, this fails and the fix can go."""
    sent, left = _flush_with(commit_flush._original_flush)
    assert len(sent) < 3 and left > 0


def test_a_flush_that_cannot_finish_gives_up_at_the_limit(monkeypatch: Any) -> None:
    monkeypatch.setattr(commit_flush, "FLUSH_LIMIT_S", 0.05)
    sent, left = _flush_with(commit_flush._flush)
    assert len(sent) < 3 and left > 0
