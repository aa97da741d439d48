"""The agents' shared parts without a broker: retry helper, stage runner, dead letters, readiness."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client import generate_latest

from promptrec.events.exceptions import ReasonCode
from promptrec.observability.metrics import RETRY_STAGES, Metrics
from promptrec.serving.batches import Inbound
from promptrec.streams.agents import DeadLetters, Readiness, StageFailed, StageRunner
from promptrec.streams.retry import Backoff, retry
from promptrec.streams.topics import TopicNames

NO_WAIT = Backoff(first=0.0, factor=1.0)


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=1)
    yield pool
    pool.shutdown()


def retries(metrics: Metrics, stage: str) -> float:
    value = metrics.registry.get_sample_value("promptrec_stage_retries_total", {"stage": stage})
    return float(value or 0.0)


def test_backoff_delays_grow_and_are_capped() -> None:
    backoff = Backoff(first=0.1, factor=4.0, cap=1.0)
    assert [backoff.delay(n) for n in (1, 2, 3)] == pytest.approx([0.1, 0.4, 1.0])
    with pytest.raises(ValueError, match="invalid backoff"):
        Backoff(first=-1)


def test_retry_stops_after_the_attempts_and_reraises_the_last_error() -> None:
    calls: list[int] = []
    seen: list[tuple[int, str]] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise OSError(f"try {len(calls)}")
        return "ok"

    def on_retry(n: int, exc: BaseException, delay: float) -> None:
        seen.append((n, str(exc)))

    assert asyncio.run(retry(flaky, attempts=5, backoff=NO_WAIT, on_retry=on_retry)) == "ok"
    assert seen == [(1, "try 1"), (2, "try 2")]
    calls.clear()
    with pytest.raises(OSError, match="try 2"):
        asyncio.run(retry(flaky, attempts=2, backoff=NO_WAIT))
    with pytest.raises(ValueError, match="attempts"):
        asyncio.run(retry(flaky, attempts=0, backoff=NO_WAIT))


def test_retry_lets_other_errors_through_at_once() -> None:
    calls: list[int] = []

    async def broken() -> None:
        calls.append(1)
        raise KeyError("not retried")

    with pytest.raises(KeyError):
        asyncio.run(retry(broken, attempts=None, backoff=NO_WAIT, retry_on=(OSError,)))
    assert calls == [1]


def test_stage_runner_retries_injected_faults_then_gives_up(executor: ThreadPoolExecutor) -> None:
    metrics = Metrics()
    runner = StageRunner(executor, metrics, {"recommend": 6})
    runner.backoff = NO_WAIT
    ran: list[int] = []

    def work(x: int) -> int:
        ran.append(x)
        return x * 2

    with pytest.raises(StageFailed, match="recommend failed: RuntimeError: injected fault"):
        asyncio.run(runner.run("recommend", work, 1))
    assert ran == [] and retries(metrics, "recommend") == 3
    # Two faults left: the next run fails twice, then passes on the engine thread.
    assert asyncio.run(runner.run("recommend", work, 2)) == 4
    assert ran == [2] and retries(metrics, "recommend") == 5
    assert asyncio.run(runner.run("learn", work, 3)) == 6 and retries(metrics, "learn") == 0


def test_stage_runner_gives_up_on_a_real_error(executor: ThreadPoolExecutor) -> None:
    runner = StageRunner(executor, Metrics(), retries=1)
    runner.backoff = NO_WAIT

    def boom() -> None:
        raise ValueError("bad batch")

    with pytest.raises(StageFailed) as info:
        asyncio.run(runner.run("learn", boom))
    assert info.value.stage == "learn" and "ValueError: bad batch" in str(info.value)


def test_every_retried_stage_exists_at_zero_including_publish() -> None:
    assert "publish" in RETRY_STAGES
    text = generate_latest(Metrics().registry).decode()
    for stage in RETRY_STAGES:
        assert f'promptrec_stage_retries_total{{stage="{stage}"}} 0.0' in text


def test_dead_letters_carry_the_original_topic_key_bytes_and_reason() -> None:
    sent: list[tuple[bytes | None, bytes]] = []

    async def send(key: bytes | None, value: bytes) -> None:
        sent.append((key, value))

    names = TopicNames.from_prefix("p.")
    metrics = Metrics()
    dead = DeadLetters(send, names, "host:1", 1024, metrics)
    record = Inbound("interactions", 2, 17, b"user-7", b"\xff garbage", None)
    asyncio.run(dead.send(record, ReasonCode.invalid_json, "not JSON"))
    [(key, value)] = sent
    letter = json.loads(value)
    assert key == b"user-7"
    assert letter["original_topic"] == "p.interactions"
    assert (letter["partition"], letter["offset"]) == (2, 17)
    assert letter["value_base64"] and letter["reason"] == "invalid_json"
    assert letter["worker"] == "host:1" and letter["detail"] == "not JSON"
    labels = {"topic": "interactions", "reason": "invalid_json"}
    assert metrics.registry.get_sample_value("promptrec_dead_letters_total", labels) == 1.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_readiness_has_one_deadline_for_both_replays() -> None:
    clock = FakeClock()
    ready = Readiness(10.0, clock=clock)
    assert ready.remaining() == 10.0 and not ready.replayed
    ready.start()
    clock.now += 7.0
    ready.catalog.set()
    # The model replay gets what is left of the one deadline, not a fresh timeout.
    assert ready.remaining() == pytest.approx(3.0)
    ready.start()  # a second waiter shares the first start
    assert ready.remaining() == pytest.approx(3.0)
    clock.now += 5.0
    assert ready.remaining() == 0.0


def test_serving_starts_with_both_replays_or_at_the_deadline() -> None:
    clock = FakeClock()
    ready = Readiness(10.0, clock=clock)
    assert not ready.serving  # not started: no deadline yet
    ready.start()
    clock.now += 9.0
    ready.catalog.set()
    assert not ready.serving  # the model replay is still pending, the deadline not reached
    clock.now += 1.0
    assert ready.serving  # past the deadline the agents serve anyway
    done = Readiness(10.0, clock=clock)
    done.catalog.set()
    done.model.set()
    assert done.serving


def test_wait_past_the_deadline_returns_at_once_and_reports_not_replayed() -> None:
    clock = FakeClock()
    ready = Readiness(30.0, clock=clock)
    ready.start()
    clock.now += 31.0  # the catalog replay used up the whole deadline
    ready.catalog.set()

    async def main() -> bool:
        # With a second, fresh timeout this would wait 30 s for the model replay.
        return await asyncio.wait_for(ready.wait(), timeout=5.0)

    assert asyncio.run(main()) is False
    assert not ready.replayed


def test_wait_returns_true_once_both_replays_are_done() -> None:
    ready = Readiness(30.0)

    async def main() -> bool:
        waiter = asyncio.ensure_future(ready.wait())
        await asyncio.sleep(0)
        ready.catalog.set()
        await asyncio.sleep(0)
        assert not waiter.done()  # the catalog alone is not enough
        ready.model.set()
        return await asyncio.wait_for(waiter, timeout=5.0)

    assert asyncio.run(main()) is True
    assert ready.replayed
