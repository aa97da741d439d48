"""Faust commits offsets only once its producer buffer is really empty.

Before Faust commits offsets it flushes its producer: ``ProducerBuffer.flush()``, then the aiokafka
producer. Table writes (the history changelog) wait in that buffer until its sender task hands
them to aiokafka. The buffer's flush (``flush_atmost``) gives up as soon as 0.1 s pass without
a message leaving it, and it counts a message as gone once the sender has taken it, before
aiokafka has it. Under load (a full aiokafka batch, an event loop busy for 100 ms) the flush
could therefore return with history writes still buffered, the commit went ahead, and a kill -9
before they were sent lost the history entries of events whose offsets were committed.

:func:`install` makes the flush wait until the buffer is empty and the sender idle, for at most
``FLUSH_LIMIT_S``; past that it logs and returns, which is where Faust would have been anyway.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from faust.transport.producer import ProducerBuffer

__all__ = ["FLUSH_LIMIT_S", "install", "pending"]

log = logging.getLogger(__name__)

# Longer than any healthy flush; a broker that takes longer is down, and Faust's own commit
# then fails or its flight recorder reports it.
FLUSH_LIMIT_S = 30.0

_original_flush = ProducerBuffer.flush
_original_send_pending = ProducerBuffer._send_pending


def pending(buffer: Any) -> int:
    """Messages of ``buffer`` not yet handed to aiokafka: queued, plus one being handed over."""
    return int(buffer.size) + int(getattr(buffer, "_promptrec_sending", 0))


async def _send_pending(self: Any, fut: Any) -> None:
    self._promptrec_sending = getattr(self, "_promptrec_sending", 0) + 1
    try:
        await _original_send_pending(self, fut)
    finally:
        self._promptrec_sending -= 1


async def _flush(self: Any) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + FLUSH_LIMIT_S
    while pending(self) and self.state == "running":
        if loop.time() > deadline:
            log.warning("producer buffer still holds %d messages after %.1f s; committing anyway",
                        pending(self), FLUSH_LIMIT_S)  # fmt: skip
            return
        if self.size:
            await self.flush_atmost(None)
        else:
            await asyncio.sleep(0.001)  # the last message is being handed over
    if self.size:
        await _original_flush(self)  # not running: Faust's own error


def install() -> None:
    """Make Faust's producer-buffer flush complete (process-wide)."""
    ProducerBuffer.flush = _flush  # type: ignore[method-assign]
    ProducerBuffer._send_pending = _send_pending  # type: ignore[method-assign]
