"""Two cuts in Faust's per-event cost: the fetch loop's hand-off and the sensor hooks.

Measured on a bare agent with the worker's configuration (README, "Where Faust's per-event cost
goes"): the hand-off is ~0.05 CPU ms/event (43 % of Faust's own cost), the sensors ~0.01. Both
are installed by :func:`promptrec.streams.app.make_app` unless ``PROMPTREC_FAUST_FAST_PATH`` is
false.
"""

from __future__ import annotations

import inspect
from typing import Any

import faust
from faust.transport.consumer import Consumer

__all__ = ["SENSOR_HOOKS", "install_fast_handoff", "sensors_off"]

_original_wait_first = Consumer.wait_first

# The hooks Faust calls per message / per stream event (streams and the consumer bind them when
# they are created, so they are replaced right after the app is built).
SENSOR_HOOKS = ("on_message_in", "on_stream_event_in", "on_stream_event_out", "on_message_out")


async def _fast_wait_first(self: Any, *coros: Any, timeout: Any = None) -> Any:
    """``Consumer.wait_first`` that awaits the callback directly while the flow runs.

    ``Consumer._drain_messages`` hands every message over with
    ``await self.wait_first(callback(message), self.suspend_flow.wait())``: per message two
    ``ensure_future`` (plus two for the stopped/crashed events) and an ``asyncio.wait``. When the
    call is exactly that pair and the flow is not suspended, the unstarted ``suspend_flow.wait()``
    is closed and the callback awaited. The one difference: a callback blocked on a full stream
    buffer is no longer abandoned when a rebalance suspends the flow; it completes when the agent
    drains, and the stream then drops that event of the old generation, as it already does for
    events queued before the rebalance. Any other call goes to Faust's original.
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
        await coros[0]
        return None
    return await _original_wait_first(self, *coros, timeout=timeout)


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
