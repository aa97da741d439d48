"""The Faust fast path: the fetch loop's direct hand-off, sensors off, and its setting."""

from __future__ import annotations

import asyncio
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from faust.transport.consumer import Consumer

from promptrec.streams import faust_fast
from promptrec.streams.app import make_app
from promptrec.streams.faust_fast import SENSOR_HOOKS, install_fast_handoff
from promptrec.streams.settings import StreamSettings


@pytest.fixture(autouse=True)
def _restore() -> Iterator[None]:
    before = Consumer.wait_first
    yield
    Consumer.wait_first = before  # type: ignore[method-assign]


def _consumer(suspended: bool) -> Any:
    """What Faust's wait_first (mode's Service.wait_first) and the fast path read off a consumer."""
    suspend = asyncio.Event()
    if suspended:
        suspend.set()
    return types.SimpleNamespace(
        suspend_flow=suspend,
        _stopped=asyncio.Event(),
        _crashed=asyncio.Event(),
        loop=asyncio.get_running_loop(),
    )


def test_a_handoff_that_does_not_block_runs_at_once_without_tasks() -> None:
    async def scenario() -> tuple[list[str], Any, Any, int]:
        seen: list[str] = []

        async def callback() -> None:
            seen.append("message")

        consumer = _consumer(suspended=False)
        waiting = consumer.suspend_flow.wait()
        tasks_before = len(asyncio.all_tasks())
        result = await faust_fast._fast_wait_first(consumer, callback(), waiting)
        return seen, result, waiting, len(asyncio.all_tasks()) - tasks_before

    seen, result, waiting, new_tasks = asyncio.run(scenario())
    assert seen == ["message"] and result is None and new_tasks == 0
    assert waiting.cr_frame is None  # closed, never started: no "never awaited" warning


def test_a_blocked_handoff_completes_when_it_can() -> None:
    async def scenario() -> list[str]:
        seen: list[str] = []
        room: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        async def callback() -> None:
            seen.append("started")
            await asyncio.sleep(0)
            seen.append(await room)

        consumer = _consumer(suspended=False)
        handoff = asyncio.ensure_future(
            faust_fast._fast_wait_first(consumer, callback(), consumer.suspend_flow.wait())
        )
        for _ in range(3):
            await asyncio.sleep(0)
        room.set_result("delivered")
        await handoff
        return seen

    assert asyncio.run(scenario()) == ["started", "delivered"]


def test_a_rebalance_abandons_a_blocked_handoff_as_faust_does() -> None:
    """The regression: a hand-off blocked on a full buffer must not finish after a rebalance.

    Awaited to the end, it completed after the rebalance's seek and the fetch loop then moved the
    partition's read offset past records it never delivered (the kill -9 crash test stalled).
    """

    async def scenario() -> list[str]:
        seen: list[str] = []
        room: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def callback() -> None:
            try:
                await room
                seen.append("delivered after the rebalance")
            except asyncio.CancelledError:
                seen.append("abandoned")
                raise

        consumer = _consumer(suspended=False)
        handoff = asyncio.ensure_future(
            faust_fast._fast_wait_first(consumer, callback(), consumer.suspend_flow.wait())
        )
        await asyncio.sleep(0)
        consumer.suspend_flow.set()  # the rebalance starts

        # The buffer gets room soon after; a hand-off still waiting would now deliver.
        def make_room() -> None:
            if not room.done():
                room.set_result(None)

        asyncio.get_running_loop().call_later(0.05, make_room)
        await handoff
        await asyncio.sleep(0.1)
        return seen

    assert asyncio.run(scenario()) == ["abandoned"]


def test_handoffs_settled_returns_once_a_blocked_handoff_has_let_go() -> None:
    """After the flow stops, a seek must wait for the blocked hand-off to return (it then sets
    its partition's read offset, which the seek's must overwrite, not the other way round)."""

    async def scenario() -> tuple[int, bool, bool]:
        room: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def callback() -> None:
            await room

        consumer = _consumer(suspended=False)
        handoff = asyncio.ensure_future(
            faust_fast._fast_wait_first(consumer, callback(), consumer.suspend_flow.wait())
        )
        await asyncio.sleep(0)
        blocked = faust_fast._blocked
        consumer.suspend_flow.set()  # the flow stops
        await faust_fast.handoffs_settled()
        return blocked, handoff.done(), faust_fast._blocked == 0

    assert asyncio.run(scenario()) == (1, True, True)


def test_handoffs_settled_gives_up_on_a_handoff_that_never_lets_go() -> None:
    async def scenario() -> float:
        faust_fast._blocked += 1  # a hand-off whose flow is never stopped
        try:
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            await faust_fast.handoffs_settled(timeout_s=0.05)
            return loop.time() - t0
        finally:
            faust_fast._blocked -= 1

    assert asyncio.run(scenario()) >= 0.05


def test_finish_passes_results_errors_and_cancellation_in_like_a_task() -> None:
    async def scenario() -> tuple[Any, list[str], list[str]]:
        loop = asyncio.get_running_loop()
        seen: list[str] = []

        async def worker(fail: asyncio.Future[int], value: asyncio.Future[int]) -> int:
            await asyncio.sleep(0)
            try:
                await fail
            except KeyError:
                seen.append("error read inside")
            return await value + 1

        fail: asyncio.Future[int] = loop.create_future()
        value: asyncio.Future[int] = loop.create_future()
        coro = worker(fail, value)
        finished = asyncio.ensure_future(faust_fast._finish(coro, coro.send(None)))
        await asyncio.sleep(0)
        fail.set_exception(KeyError("x"))
        await asyncio.sleep(0)
        value.set_result(41)
        result = await finished

        cancelled: list[str] = []

        async def sleeper(gate: asyncio.Future[None]) -> None:
            try:
                await gate
            except asyncio.CancelledError:
                cancelled.append("cancelled inside")
                raise

        gate: asyncio.Future[None] = loop.create_future()
        coro2 = sleeper(gate)
        task = asyncio.ensure_future(faust_fast._finish(coro2, coro2.send(None)))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return result, seen, cancelled

    result, seen, cancelled = asyncio.run(scenario())
    assert result == 42 and seen == ["error read inside"] and cancelled == ["cancelled inside"]


@pytest.mark.parametrize("case", ["suspended", "other coroutine", "timeout", "three"])
def test_anything_else_goes_to_fausts_wait_first(
    case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[int, Any]] = []

    async def original(self: Any, *coros: Any, timeout: Any = None) -> str:
        calls.append((len(coros), timeout))
        for c in coros:
            c.close()
        return "faust"

    monkeypatch.setattr(faust_fast, "_original_wait_first", original)

    async def noop() -> None:
        return None

    async def scenario() -> Any:
        consumer = _consumer(suspended=case == "suspended")
        second = asyncio.Event().wait() if case == "other coroutine" else None
        second = second or consumer.suspend_flow.wait()
        coros = [noop(), second] + ([noop()] if case == "three" else [])
        timeout = 1.0 if case == "timeout" else None
        return await faust_fast._fast_wait_first(consumer, *coros, timeout=timeout)

    assert asyncio.run(scenario()) == "faust"
    assert len(calls) == 1


def test_install_toggles_the_consumer_method() -> None:
    install_fast_handoff(True)
    assert Consumer.wait_first is faust_fast._fast_wait_first
    install_fast_handoff(False)
    assert Consumer.wait_first is faust_fast._original_wait_first


@pytest.mark.parametrize("fast", [True, False])
def test_make_app_follows_the_setting(fast: bool, tmp_path: Path) -> None:
    app = make_app(StreamSettings(state_dir=tmp_path, faust_fast_path=fast))
    hooks = [getattr(app.sensors, hook) for hook in SENSOR_HOOKS]
    assert all(h.__qualname__ == "sensors_off.<locals>.noop" for h in hooks) is fast
    assert (Consumer.wait_first is faust_fast._fast_wait_first) is fast
    # The hooks still take what Faust passes them.
    assert app.sensors.on_message_in(None, 0, None) is None  # type: ignore[func-returns-value]
