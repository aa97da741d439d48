"""The watchdog's second check: a partition whose records are never handed to the agents.

Fakes stand in for Faust's consumer internals (the attributes the watchdog reads); the
decision and the rejoin call are the watchdog's own code. The end-to-end stall test on the real
broker is tests/streams/test_watchdog.py.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from kafka import TopicPartition

from promptrec.observability.metrics import Metrics
from promptrec.streams.watchdog import StallWatchdog

TOPIC = "p.interactions"
TP = TopicPartition(TOPIC, 3)


class _Assignment:
    active = True

    def __init__(self, state: Any) -> None:
        self.tps = [TP]
        self._state = state

    def state_value(self, tp: TopicPartition) -> Any:
        return self._state


def _watchdog(position: int, highwater: int, read: int | None) -> tuple[StallWatchdog, Any]:
    rejoins: list[int] = []
    state = SimpleNamespace(
        position=position, has_valid_position=True, highwater=highwater, timestamp=1.0
    )
    aio = SimpleNamespace(
        _subscription=SimpleNamespace(subscription=SimpleNamespace(assignment=_Assignment(state))),
        _coordinator=SimpleNamespace(request_rejoin=lambda: rejoins.append(1)),
    )

    async def call_thread(fn: Any, *args: Any) -> Any:
        return fn(*args)

    consumer = SimpleNamespace(
        _thread=SimpleNamespace(_consumer=aio, call_thread=call_thread),
        _read_offset={TP: read} if read is not None else {},
        _committed_offset={TP: 100},
    )
    app = SimpleNamespace(rebalancing=False, _consumer=consumer)
    dog = StallWatchdog(app, Metrics(), {TOPIC: "interactions"}, timeout_s=10.0)  # type: ignore[arg-type]
    return dog, SimpleNamespace(rejoins=rejoins, state=state, consumer=consumer)


def _stalls(dog: StallWatchdog) -> float:
    return dog.metrics.partition_stalls.labels("interactions", "3")._value.get()


def test_fetched_but_never_delivered_rejoins_after_twice_the_timeout() -> None:
    # Fetch position at the high watermark, Faust's read offset stuck 3,500 records behind.
    dog, fake = _watchdog(position=3600, highwater=3600, read=99)
    for now in (0.0, 10.0, 19.0):
        assert asyncio.run(dog.check_once(now)) == []
    (action,) = asyncio.run(dog.check_once(20.5))
    assert action[1].kind == "rejoin" and fake.rejoins == [1] and _stalls(dog) == 1.0


def test_moving_deliveries_and_caught_up_partitions_never_rejoin() -> None:
    dog, fake = _watchdog(position=3600, highwater=3600, read=99)
    for n, now in enumerate((0.0, 15.0, 30.0, 45.0)):
        fake.consumer._read_offset[TP] = 99 + 500 * n  # the agents keep reading
        assert asyncio.run(dog.check_once(now)) == []
    dog, fake = _watchdog(position=3600, highwater=3600, read=3599)  # all delivered
    for now in (0.0, 30.0, 60.0):
        assert asyncio.run(dog.check_once(now)) == []
    assert fake.rejoins == [] and _stalls(dog) == 0.0


def test_without_a_read_offset_the_committed_offset_counts() -> None:
    dog, fake = _watchdog(position=3600, highwater=3600, read=None)  # committed 100
    asyncio.run(dog.check_once(0.0))
    assert asyncio.run(dog.check_once(21.0)) and fake.rejoins == [1]
