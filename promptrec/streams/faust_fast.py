"""Two cuts in Faust's per-event cost: the fetch loop's hand-off and the sensor hooks.

Measured on a bare agent with the worker's configuration (README, "Where Faust's per-event cost
goes"): the hand-off is ~0.05 CPU ms/event (43 % of Faust's own cost), the sensors ~0.01. Both
are installed by :func:`promptrec.streams.app.make_app` unless ``PROMPTREC_FAUST_FAST_PATH`` is
false.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Coroutine
from typing import Any

import faust
from faust.transport.consumer import Consumer

__all__ = ["SENSOR_HOOKS", "handoffs_settled", "install_fast_handoff", "sensors_off"]

_original_wait_first = Consumer.wait_first

# Hand-offs of the fast path now raced against the suspend wait (see handoffs_settled).
_blocked = 0

# The hooks Faust calls per message / per stream event (streams and the consumer bind them when
# they are created, so they are replaced right after the app is built).
SENSOR_HOOKS = ("on_message_in", "on_stream_event_in", "on_stream_event_out", "on_message_out")


async def _finish(coro: Coroutine[Any, Any, Any], yielded: Any) -> Any:
    """Drive ``coro``, already started and suspended on ``yielded``, to its end as a Task would.

    ``yielded`` is what the coroutine's last step yielded: an asyncio future it waits on, or None
    (a bare ``yield``: run again on the next loop iteration). The coroutine reads a future's
    result or exception itself when it is sent None, so only cancellation needs passing in:
    cancelling this task cancels the future (the coroutine then sees CancelledError from it) or,
    when the future is already done, throws CancelledError into the coroutine.
    """
    while True:
        cancel = False
        try:
            if yielded is None:
                await asyncio.sleep(0)
            else:
                # Task's own step clears this before it waits; a future still flagged as blocking
                # refuses a second await.
                yielded._asyncio_future_blocking = False
                await yielded
        except asyncio.CancelledError:
            cancel = not (yielded is not None and yielded.cancelled())
        except Exception:  # the coroutine reads it from the future itself
            pass
        try:
            yielded = coro.throw(asyncio.CancelledError()) if cancel else coro.send(None)
        except StopIteration as stop:
            return stop.value


async def _fast_wait_first(self: Any, *coros: Any, timeout: Any = None) -> Any:
    """``Consumer.wait_first`` that runs the callback eagerly while the flow runs.

    ``Consumer._drain_messages`` hands every message over with
    ``await self.wait_first(callback(message), self.suspend_flow.wait())``: per message two
    ``ensure_future`` (plus two for the stopped/crashed events) and an ``asyncio.wait``. When the
    call is exactly that pair and the flow is not suspended, the unstarted ``suspend_flow.wait()``
    is closed and the callback's first step runs at once. Nearly always that step is the whole
    hand-off (the event goes into a stream buffer with room) and nothing else is created.

    When the callback blocks instead (a full stream buffer, suspended flow control, a producer
    backlog), the rest of it runs in a task raced against the suspend wait, exactly as Faust
    does: a rebalance abandons the blocked hand-off. Awaiting it to the end was wrong: it then
    completed after the rebalance's seek, and the fetch loop set the partition's read offset to
    the old message's offset, above the committed one, so the records between were dropped as
    already read, or the old event was skipped and acked past them. Any other call goes to
    Faust's original.
    """
    suspend = self.suspend_flow
    if (
        len(coros) == 2
        and timeout is None
        and not suspend.is_set()
        and inspect.iscoroutine(coros[1])
        and inspect.getcoroutinelocals(coros[1]).get("self") is suspend
    ):
        coros[1].close()  # never started: nothing to cancel
        callback = coros[0]
        try:
            yielded = callback.send(None)
        except StopIteration:
            return None
        rest = asyncio.ensure_future(_finish(callback, yielded))
        global _blocked
        _blocked += 1
        try:
            return await _original_wait_first(self, rest, self.suspend_flow.wait())
        finally:
            _blocked -= 1
    return await _original_wait_first(self, *coros, timeout=timeout)


async def handoffs_settled(timeout_s: float = 5.0) -> None:
    """Return once the fetch loop holds no blocked hand-off (call after stopping the flow).

    A hand-off blocked when the flow stops returns at the suspend wait, and the fetch loop then
    sets that partition's read offset to the message's offset: a seek to the committed offsets
    must come after that, or the old offset overwrites the new one. With the fast path the
    blocked hand-offs are counted; Faust's own wait_first returns within a few loop iterations,
    which the first yields cover.
    """
    for _ in range(5):
        await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while _blocked and loop.time() < deadline:
        await asyncio.sleep(0.005)


def install_fast_handoff(enabled: bool) -> None:
    """Install (or, with ``enabled=False``, remove) the fast hand-off; process-wide."""
    Consumer.wait_first = _fast_wait_first if enabled else _original_wait_first  # type: ignore[method-assign]


def sensors_off(app: faust.App) -> None:
    """Make the app's per-event sensor hooks no-ops.

    Only Faust's own Monitor counters (``app.monitor``) lose their input; nothing in promptrec
    reads them (the worker keeps its own Prometheus metrics).
    """

    def noop(*args: Any, **kwargs: Any) -> None:
        return None

    for hook in SENSOR_HOOKS:
        setattr(app.sensors, hook, noop)
