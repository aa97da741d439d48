"""Helpers of the fault-injection tests: generated streams, worker factories, state readers."""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from promptrec.broker.embedded import free_port
from promptrec.streams.clients import make_admin
from promptrec.streams.offsets import high_watermarks
from promptrec.streams.settings import StreamSettings
from tests.pipeline_fixtures import (
    TOPICS,
    Producer,
    Recorder,
    WorkerProcess,
    interaction,
    now_ms,
    settings_for,
)

__all__ = [
    "SEED_ENV",
    "answer_once_indexed",
    "catalog",
    "check_histories",
    "clone",
    "committed",
    "delivery",
    "expected_histories",
    "feedback_for",
    "histories",
    "interactions",
    "kill_seed",
    "publish_catalog",
    "read_all",
    "settings_for",
    "stalls",
    "start_worker",
    "wait_all_answered",
    "worker_env",
]

# Seed of a fault test's random choices (kill point, generated events). Printed by every test
# that uses it; set it to replay a run: PROMPTREC_TEST_SEED=1234 pytest tests/streams/...
SEED_ENV = "PROMPTREC_TEST_SEED"

WORDS = [w for titles in TOPICS.values() for t in titles for w in t.lower().split() if len(w) > 3]


def worker_env(settings: StreamSettings, **extra: str) -> dict[str, str]:
    """Environment of a test worker: the settings the CLI has no flag for."""
    env = {
        "PROMPTREC_PARTITIONS": str(settings.partitions),
        "PROMPTREC_CHECKPOINT_INTERVAL_S": "2",
        "PROMPTREC_HISTORY_LEN": "100",
    }
    env.update(extra)
    return env


def clone(settings: StreamSettings, state_dir: Path) -> StreamSettings:
    """Same topics and group, another state folder and metrics port (a second worker)."""
    return settings.model_copy(update={"state_dir": state_dir, "metrics_port": free_port()})


def catalog(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` items with short topical titles (fast to encode)."""
    rng = random.Random(seed)
    topics = list(TOPICS)
    items = []
    for i in range(n):
        topic = topics[i % len(topics)]
        title = " ".join(rng.sample(WORDS, 4))
        items.append(
            {"item_id": f"i{i}", "title": f"{topic} {title}", "attributes": {"category": topic}}
        )
    return items


def publish_catalog(producer: Producer, n: int, seed: int = 0) -> None:
    """Send ``catalog(n, seed)`` to the items topic and wait until the broker has it all."""
    for item in catalog(n, seed):
        producer.send("items", item["item_id"], item)
    producer.flush()


def interactions(n: int, users: int, items: int, seed: int = 1) -> list[dict[str, Any]]:
    """``n`` click events with unique ids, spread over ``users`` users and ``items`` items."""
    rng = random.Random(seed)
    ts = now_ms()
    return [
        {
            "event_id": f"e{i}-{uuid.uuid4().hex[:8]}",
            "user_id": f"u{rng.randrange(users)}",
            "item_id": f"i{rng.randrange(items)}",
            "type": "click",
            "ts": ts,
        }
        for i in range(n)
    ]


def feedback_for(events: list[dict[str, Any]], every: int, seed: int = 2) -> list[dict[str, Any]]:
    """One labelled feedback event for every ``every``-th interaction (same user and item)."""
    rng = random.Random(seed)
    return [
        {
            "event_id": f"f{i}-{uuid.uuid4().hex[:8]}",
            "user_id": e["user_id"],
            "item_id": e["item_id"],
            "label": rng.randrange(2),
            "ts": e["ts"],
        }
        for i, e in enumerate(events)
        if i % every == every - 1
    ]


def read_all(
    settings: StreamSettings, topic: str, timeout: float = 30.0
) -> Iterator[tuple[bytes | None, bytes | None]]:
    """Every (key, value) of a topic, from the beginning to the high watermarks seen at the start.

    The ends are Fetch high watermarks: the worker's changelog comes in multi-record batches,
    where the embedded broker's ``end_offsets`` stop short.

    Fails when ``timeout`` seconds pass without a record: a changelog of 20,000 one-record
    batches takes longer than that to read on a loaded machine, so only a stuck read counts.
    """
    consumer = KafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False, fetch_max_wait_ms=20
    )
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = high_watermarks(settings, tps)
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < end[tp] for tp in tps):
            assert time.monotonic() < deadline, f"reading {topic} stopped before its end"
            for batch in consumer.poll(timeout_ms=200).values():
                deadline = time.monotonic() + timeout
                for r in batch:
                    yield r.key, r.value
    finally:
        consumer.close()


def histories(settings: StreamSettings) -> dict[str, dict[str, Any]]:
    """The history table as its changelog holds it: the last value per user."""
    table: dict[str, dict[str, Any]] = {}
    topic = f"{settings.effective_app_id}-history-changelog"
    for key, value in read_all(settings, topic):
        if key is None:
            continue
        user = json.loads(key)
        if value is None:
            table.pop(user, None)
        else:
            table[user] = json.loads(value)
    return table


def expected_histories(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by_user: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        by_user[e["user_id"]].append(e)
    return by_user


def check_histories(settings: StreamSettings, events: list[dict[str, Any]]) -> None:
    """Every interaction is in its user's history exactly once, in order."""
    table = histories(settings)
    for user, sent in expected_histories(events).items():
        value = table.get(user)
        assert value is not None, f"history of {user} lost"
        ids = [e["event_id"] for e in sent]
        assert value["count"] == len(sent), (user, value["count"], len(sent))
        assert len(set(value["event_ids"])) == len(value["event_ids"]), f"duplicates for {user}"
        assert value["event_ids"] == ids[-len(value["event_ids"]) :], f"history of {user} differs"
        items = [e["item_id"] for e in sent]
        assert value["items"] == items[-len(value["items"]) :]


def kill_seed(test: str) -> int:
    """The seed of ``test``'s kill point: ``PROMPTREC_TEST_SEED`` or a fresh one, printed."""
    raw = os.environ.get(SEED_ENV, "").strip()
    if raw:
        try:
            seed = int(raw)
        except ValueError:
            raise ValueError(f"{SEED_ENV}={raw!r} is not a whole number") from None
    else:
        seed = random.SystemRandom().randrange(1_000_000)
    print(f"{test}: {SEED_ENV}={seed} (set it to replay this kill point)")
    return seed


def delivery(events: list[dict[str, Any]], recommendations: list[dict[str, Any]]) -> dict[str, int]:
    """Events sent, events without a recommendation, and extra recommendations (at least once)."""
    sources = Counter(r["source_event_id"] for r in recommendations)
    wanted = {e["event_id"] for e in events}
    return {
        "events_sent": len(events),
        "events_lost": len(wanted - set(sources)),
        "duplicate_recommendations": sum(n - 1 for e, n in sources.items() if e in wanted),
    }


def explain_missing(
    settings: StreamSettings, wanted: set[str], recommendations: list[dict[str, Any]]
) -> str:
    """Why a delivery check failed, for the failure message: where the unanswered events are.

    Per interactions partition: the offset ranges of the events without a recommendation, the
    group's committed offset, and which worker answered the events just before and after each
    range (an unanswered range below the committed offset was acked without an answer: lost).
    """
    answered: dict[str, set[str]] = defaultdict(set)
    for r in recommendations:
        answered[r["source_event_id"]].add(str(r.get("worker")))
    topic = f"{settings.topic_prefix}interactions"
    consumer = KafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        enable_auto_commit=False,
        consumer_timeout_ms=5000,
    )
    by_partition: dict[int, list[tuple[int, str]]] = defaultdict(list)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        for m in consumer:
            try:
                event_id = json.loads(m.value)["event_id"]
            except (ValueError, KeyError, TypeError):
                continue
            if event_id in wanted:
                by_partition[m.partition].append((m.offset, event_id))
    finally:
        consumer.close()
    group = settings.effective_app_id
    admin = make_admin(settings)
    try:
        offsets = admin.list_group_offsets({group: None}).get(group, {})
    finally:
        admin.close()
    lines = []
    for partition, rows in sorted(by_partition.items()):
        rows.sort()
        committed = offsets.get(TopicPartition(topic, partition))
        ranges: list[list[int]] = []  # [first index, last index] into rows
        for i, (_, event_id) in enumerate(rows):
            if event_id not in answered:
                if ranges and ranges[-1][1] == i - 1:
                    ranges[-1][1] = i
                else:
                    ranges.append([i, i])
        parts = []
        for first, last in ranges:
            before = answered.get(rows[first - 1][1], set()) if first > 0 else set()
            after = answered.get(rows[last + 1][1], set()) if last + 1 < len(rows) else set()
            parts.append(
                f"{rows[first][0]}..{rows[last][0]} ({last - first + 1} events; answered before "
                f"by {sorted(before) or '-'}, after by {sorted(after) or '-'})"
            )
        c = committed.offset if committed is not None else None
        lines.append(
            f"partition {partition}: offsets 0..{rows[-1][0]}, committed {c}, unanswered "
            + ("; ".join(parts) or "none")
        )
    return "\n".join(lines)


def answer_once_indexed(
    worker: WorkerProcess,
    producer: Producer,
    recs: Recorder,
    items: int,
    timeout: float = 60.0,
) -> dict[str, Any]:
    """Wait until the worker's index holds ``items`` items, then click (u1, i1) and return the
    recommendation that answers it."""
    deadline = time.monotonic() + timeout
    while worker.metric("promptrec_index_items") < items:
        assert worker.alive, worker.log_tail()
        assert time.monotonic() < deadline, "catalog not indexed"
        time.sleep(0.2)
    click = interaction("u1", "i1")
    producer.send("interactions", "u1", click)
    producer.flush()
    recs.wait_for(lambda rs: any(r["source_event_id"] == click["event_id"] for r in rs))
    return next(r for r in recs.records if r["source_event_id"] == click["event_id"])


def wait_all_answered(
    recs: Recorder,
    settings: StreamSettings,
    events: list[dict[str, Any]],
    timeout: float,
    context: str = "",
) -> None:
    """Poll until every event has a recommendation; else fail with :func:`explain_missing`'s
    account (``context``, for example the seed, goes into the message)."""
    wanted = {e["event_id"] for e in events}
    try:
        recs.wait_for(lambda rs: wanted <= {r["source_event_id"] for r in rs}, timeout=timeout)
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}{context}\n{explain_missing(settings, wanted, recs.records)}"
        ) from None


def stalls(worker: WorkerProcess) -> float:
    """Stalls the worker's watchdog counted, over all its partitions (0 if it cannot be read)."""
    try:
        samples = worker.metrics()
    except OSError:
        return 0.0
    return sum(v for (name, _), v in samples.items() if name == "promptrec_partition_stalls_total")


def start_worker(settings: StreamSettings, log: Path, **env: str) -> WorkerProcess:
    return WorkerProcess(settings, log, env=worker_env(settings, **env)).start()


def committed(settings: StreamSettings) -> int:
    """The group's committed offset of the interactions partition (-1: none)."""
    tp = TopicPartition(f"{settings.topic_prefix}interactions", 0)
    group = settings.effective_app_id
    admin = make_admin(settings)
    try:
        offsets = admin.list_group_offsets({group: [tp]}).get(group, {})
    finally:
        admin.close()
    return int(offsets[tp].offset) if tp in offsets else -1
