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
    suspend = asyncio.Event()
    if suspended:
        suspend.set()
    return types.SimpleNamespace(suspend_flow=suspend)


def test_handoff_awaits_the_callback_and_closes_the_suspend_wait() -> None:
    async def scenario() -> tuple[list[str], Any, Any]:
        seen: list[str] = []

        async def callback() -> None:
            await asyncio.sleep(0)
            seen.append("message")

        consumer = _consumer(suspended=False)
        waiting = consumer.suspend_flow.wait()
        result = await faust_fast._fast_wait_first(consumer, callback(), waiting)
        return seen, result, waiting

    seen, result, waiting = asyncio.run(scenario())
    assert seen == ["message"] and result is None
    assert waiting.cr_frame is None  # closed, never started: no "never awaited" warning


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
