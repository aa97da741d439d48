"""Topic names of the pipeline and their idempotent creation.

Every topic is ``<topic_prefix><logical name>``. The keyed event topics (interactions, feedback,
recommendation requests) must be co-partitioned: the per-user history table is keyed by user id and
the worker that owns a user must see all of that user's events.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import astuple, dataclass, fields
from typing import Any

from kafka import KafkaAdminClient
from kafka.errors import BrokerNotAvailableError, KafkaError, TopicAlreadyExistsError, for_code

from promptrec.streams.clients import make_admin
from promptrec.streams.exceptions import BrokerError, TopicError
from promptrec.streams.settings import StreamSettings

__all__ = [
    "COMPACTED",
    "CO_PARTITIONED",
    "LOGICAL_NAMES",
    "TopicNames",
    "ensure_topics",
    "topic_partitions",
]

log = logging.getLogger(__name__)

# Logical name -> TopicNames field, in the order topics are listed and created.
_FIELDS: dict[str, str] = {
    "items": "items",
    "users": "users",
    "interactions": "interactions",
    "feedback": "feedback",
    "recommendation-requests": "requests",
    "recommendations": "recommendations",
    "dead-letter": "dead_letter",
    "model-updates": "model_updates",
}
LOGICAL_NAMES: tuple[str, ...] = tuple(_FIELDS)
# Latest value per key is all that matters (catalog, user profiles, model versions).
COMPACTED: frozenset[str] = frozenset({"items", "users", "model-updates"})
CO_PARTITIONED: tuple[str, ...] = ("interactions", "feedback", "recommendation-requests")

# Kafka's own rule for topic names.
_TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


@dataclass(frozen=True)
class TopicNames:
    """Full topic names of the pipeline, one field per logical topic."""

    items: str
    users: str
    interactions: str
    feedback: str
    requests: str
    recommendations: str
    dead_letter: str
    model_updates: str

    @classmethod
    def from_prefix(cls, prefix: str) -> TopicNames:
        """Names ``prefix + logical name`` for every logical topic."""
        return cls(**{field: f"{prefix}{logical}" for logical, field in _FIELDS.items()})

    @classmethod
    def from_settings(cls, settings: StreamSettings) -> TopicNames:
        """Names under ``settings.topic_prefix``."""
        return cls.from_prefix(settings.topic_prefix)

    def resolve(self, name_or_logical: str) -> str:
        """The full topic name for a logical name (``"interactions"``), a field name
        (``"dead_letter"``) or a full topic name (returned unchanged).

        Raises:
            TopicError: The name is not a valid Kafka topic name.
        """
        if name_or_logical in _FIELDS:
            return str(getattr(self, _FIELDS[name_or_logical]))
        if name_or_logical in {f.name for f in fields(self)}:
            return str(getattr(self, name_or_logical))
        if not _TOPIC_RE.match(name_or_logical) or name_or_logical in {".", ".."}:
            raise TopicError(
                f"invalid topic name {name_or_logical!r}: use 1-249 letters, digits, '.', '_', '-'"
            )
        return name_or_logical

    def logical(self, topic: str) -> str | None:
        """The logical name of a full or logical topic name, None for a foreign topic."""
        if topic in _FIELDS:
            return topic
        for logical, field in _FIELDS.items():
            if getattr(self, field) == topic or field == topic:
                return logical
        return None

    def by_topic(self) -> dict[str, str]:
        """Full topic name -> logical name, for every topic of the pipeline (hot-path lookups)."""
        return {str(getattr(self, field)): logical for logical, field in _FIELDS.items()}

    def all(self) -> list[str]:
        """All full topic names, in ``LOGICAL_NAMES`` order."""
        return [str(name) for name in astuple(self)]


def _topic_spec(logical: str, settings: StreamSettings) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "num_partitions": settings.partitions,
        "replication_factor": settings.replication_factor,
    }
    if logical in COMPACTED:
        spec["configs"] = {"cleanup.policy": "compact"}
    return spec


def topic_partitions(admin: KafkaAdminClient, topics: list[str]) -> dict[str, int]:
    """Partition counts of those ``topics`` that exist (missing ones are left out)."""
    existing = set(admin.list_topics())
    wanted = [t for t in topics if t in existing]
    if not wanted:
        return {}
    counts: dict[str, int] = {}
    for desc in admin.describe_topics(wanted):
        if desc.get("error_code", 0) == 0:
            counts[desc["name"]] = len(desc["partitions"])
    return counts


def _check_co_partitioning(names: TopicNames, counts: dict[str, int]) -> None:
    keyed = {
        names.resolve(logical): counts.get(names.resolve(logical)) for logical in CO_PARTITIONED
    }
    if len({n for n in keyed.values() if n is not None}) > 1:
        detail = ", ".join(f"{topic}={n}" for topic, n in keyed.items())
        raise TopicError(
            "co-partitioned topics have different partition counts "
            f"({detail}); recreate them with the same count"
        )


def _create_missing(
    admin: KafkaAdminClient, names: TopicNames, settings: StreamSettings, timeout: float
) -> list[str]:
    existing = set(admin.list_topics())
    missing = {
        names.resolve(logical): _topic_spec(logical, settings)
        for logical in LOGICAL_NAMES
        if names.resolve(logical) not in existing
    }
    if not missing:
        return []
    result = admin.create_topics(
        missing, timeout_ms=int(timeout * 1000), raise_errors=False, wait_for_metadata=False
    )
    created: list[str] = []
    for entry in result.get("topics", []):
        if entry["error_code"] == 0:
            created.append(entry["name"])
            continue
        error = for_code(entry["error_code"])
        if error is TopicAlreadyExistsError:
            continue  # a concurrent creator won the race; fine
        message = entry.get("error_message") or error.__name__
        raise error(f"{entry['name']}: {message}")
    order = names.all()
    return sorted(created, key=order.index)


def ensure_topics(
    settings: StreamSettings, admin: KafkaAdminClient | None = None, timeout: float = 30.0
) -> list[str]:
    """Creates the missing pipeline topics and returns the names it created.

    Compacted: items, users, model-updates. All topics get ``settings.partitions`` partitions and
    ``settings.replication_factor`` replicas. Retries while the broker warms up.

    Args:
        settings: Broker, prefix, partition and replication settings.
        admin: Admin client to use (not closed); None creates and closes one.
        timeout: Seconds to keep retrying.

    Raises:
        TopicError: Topics could not be created within ``timeout`` (or a non-retriable error), or
            the co-partitioned topics have different partition counts.
    """
    names = TopicNames.from_settings(settings)
    deadline = time.monotonic() + timeout
    own_admin = admin is None
    last_error: Exception | None = None
    created: list[str] = []
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TopicError(
                    f"cannot create topics on {settings.broker} within {timeout:g}s: {last_error}"
                ) from last_error
            try:
                if admin is None:
                    ms = max(1000, int(remaining * 1000))
                    admin = make_admin(settings, bootstrap_timeout_ms=ms, request_timeout_ms=ms)
                created += _create_missing(admin, names, settings, min(remaining, 30.0))
                counts = topic_partitions(admin, names.all())
                if len(counts) == len(LOGICAL_NAMES):
                    break
                last_error = TopicError(f"topics not visible yet: {set(names.all()) - set(counts)}")
            except BrokerError as exc:  # unreachable: make_admin already waited `remaining`
                last_error = exc
            except KafkaError as exc:
                # BrokerNotAvailable is what a broker still starting up answers.
                if not (exc.retriable or isinstance(exc, BrokerNotAvailableError)):
                    raise TopicError(f"cannot create topics: {exc}") from exc
                last_error = exc
                log.debug("ensure_topics: retrying after %s", exc)
            time.sleep(0.2)
        _check_co_partitioning(names, counts)
    finally:
        if own_admin and admin is not None:
            admin.close()
    if created:
        log.info("created topics %s", created)
    return created
