"""Topic names and ensure_topics against the real embedded broker."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from kafka.admin import ConfigResource, ConfigResourceType

from promptrec.broker.embedded import free_port
from promptrec.streams.clients import make_admin
from promptrec.streams.exceptions import TopicError
from promptrec.streams.settings import StreamSettings
from promptrec.streams.topics import (
    CO_PARTITIONED,
    COMPACTED,
    LOGICAL_NAMES,
    TopicNames,
    ensure_topics,
    topic_partitions,
)


def test_names_from_prefix() -> None:
    names = TopicNames.from_prefix("app.")
    assert names.requests == "app.recommendation-requests"
    assert names.dead_letter == "app.dead-letter"
    assert names.model_updates == "app.model-updates"
    assert names.all() == [f"app.{logical}" for logical in LOGICAL_NAMES]
    assert len(set(names.all())) == 8


def test_names_from_settings_and_resolve() -> None:
    names = TopicNames.from_settings(StreamSettings(topic_prefix="x-"))
    assert names.resolve("interactions") == "x-interactions"
    assert names.resolve("recommendation-requests") == "x-recommendation-requests"
    assert names.resolve("dead_letter") == "x-dead-letter"  # field name works too
    assert names.resolve("x-feedback") == "x-feedback"  # full name unchanged
    assert names.resolve("other.topic") == "other.topic"  # foreign topic unchanged
    assert names.logical("x-recommendation-requests") == "recommendation-requests"
    assert names.logical("items") == "items"
    assert names.logical("other.topic") is None
    for bad in ("", "has space", "a/b", "x" * 250, ".."):
        with pytest.raises(TopicError):
            names.resolve(bad)


def test_names_are_frozen() -> None:
    names = TopicNames.from_prefix("p.")
    with pytest.raises(AttributeError):
        names.items = "changed"  # type: ignore[misc]


def _compacted(settings: StreamSettings) -> dict[str, bool]:
    names = TopicNames.from_settings(settings)
    admin = make_admin(settings)
    try:
        described = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t) for t in names.all()],
            config_filter="all",
        )["topic"]
    finally:
        admin.close()
    return {
        topic: described[topic].get("cleanup.policy", {}).get("value") == "compact"
        for topic in names.all()
    }


@pytest.mark.integration
def test_ensure_topics_creates_the_set(make_settings: Callable[..., StreamSettings]) -> None:
    settings = make_settings(partitions=3)
    names = TopicNames.from_settings(settings)
    created = ensure_topics(settings, timeout=10)
    assert created == names.all()
    admin = make_admin(settings)
    try:
        assert topic_partitions(admin, names.all()) == dict.fromkeys(names.all(), 3)
    finally:
        admin.close()
    compacted = _compacted(settings)
    assert compacted == {names.resolve(logical): logical in COMPACTED for logical in LOGICAL_NAMES}

    # Idempotent: nothing new, nothing changed.
    assert ensure_topics(settings, timeout=10) == []
    assert _compacted(settings) == compacted


@pytest.mark.integration
def test_ensure_topics_creates_only_missing(make_settings: Callable[..., StreamSettings]) -> None:
    settings = make_settings()
    names = TopicNames.from_settings(settings)
    admin = make_admin(settings)
    try:
        admin.create_topics({names.items: {"num_partitions": 1, "replication_factor": 1}})
        created = ensure_topics(settings, admin=admin, timeout=10)
        assert names.items not in created
        assert sorted(created) == sorted(set(names.all()) - {names.items})
        # The pre-existing topic keeps its partition count (only co-partitioned ones must match).
        assert topic_partitions(admin, [names.items]) == {names.items: 1}
        assert admin.list_topics()  # the passed-in admin is still open
    finally:
        admin.close()


@pytest.mark.integration
@pytest.mark.parametrize("logical", CO_PARTITIONED)
def test_partition_mismatch_is_a_topic_error(
    make_settings: Callable[..., StreamSettings], logical: str
) -> None:
    settings = make_settings(partitions=4)
    odd = TopicNames.from_settings(settings).resolve(logical)
    admin = make_admin(settings)
    try:
        admin.create_topics({odd: {"num_partitions": 2, "replication_factor": 1}})
    finally:
        admin.close()
    with pytest.raises(TopicError, match=rf"co-partitioned.*{odd}=2"):
        ensure_topics(settings, timeout=10)


@pytest.mark.integration
def test_co_partitioned_with_other_count_is_accepted(
    make_settings: Callable[..., StreamSettings],
) -> None:
    # Existing keyed topics agree with each other; the partitions setting only applies on create.
    ensure_topics(make_settings(partitions=2), timeout=10)
    assert ensure_topics(make_settings(partitions=4), timeout=10) == []


def test_unreachable_broker_is_a_topic_error() -> None:
    settings = StreamSettings(broker=f"127.0.0.1:{free_port()}")
    started = time.monotonic()
    with pytest.raises(TopicError, match="cannot create topics"):
        ensure_topics(settings, timeout=2)
    assert time.monotonic() - started < 6
