"""Reading dead-letter records back: recover the original bytes, select, decide what to replay.

Kafka-free: the ``promptrec dead-letter`` commands read the topic and hand each value here.

Replay policy. A reason in :data:`RETRYABLE_REASONS` (``processing_error``, ``unknown_item``,
``unknown_user``) says nothing is wrong with the record itself: it failed because of the worker or
of what the worker knew at the time, so it is re-sent by default. Every other reason
(:data:`DATA_ERROR_REASONS`) is a defect of the bytes, which a replay would only dead-letter again;
such records are re-sent only when their reason is asked for by name. A record whose key or value
was cut (``truncated``) is never re-sent: its original bytes are gone.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from promptrec.events.exceptions import EventError, InvalidEvent, ReasonCode
from promptrec.events.schemas import DeadLetter, Limits, decode_dead_letter

__all__ = [
    "DATA_ERROR_REASONS",
    "RETRYABLE_REASONS",
    "BadDeadLetter",
    "Selection",
    "original_bytes",
    "parse_dead_letter",
    "parse_offset",
    "parse_time",
    "skip_reason",
]

RETRYABLE_REASONS: frozenset[ReasonCode] = frozenset(
    {ReasonCode.processing_error, ReasonCode.unknown_item, ReasonCode.unknown_user}
)
"""Reasons re-sent by default: the record was valid, the worker or its catalog was not ready."""
DATA_ERROR_REASONS: frozenset[ReasonCode] = frozenset(ReasonCode) - RETRYABLE_REASONS
"""Reasons re-sent only when named: the bytes themselves are wrong (schema, JSON, ts, ...)."""

# A dead-letter value holds up to dead_letter_max_bytes of key and of value, base64 inflating
# them by 4/3; no sane setting comes near this, and it keeps a hostile value bounded.
_MAX_RECORD_BYTES = 64 * 1024 * 1024
# Dead-letter records are read back long after they were written and across clock skew: only
# the record's shape matters here, not how recent its ts is.
_LIMITS = Limits(max_bytes=_MAX_RECORD_BYTES, min_ts=0, max_future_ms=100 * 365 * 86_400_000)
_TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
# Epoch milliseconds below this are 1973: an integer this small is epoch seconds by mistake.
_MIN_MS = 100_000_000_000
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


class BadDeadLetter(EventError):
    """A record of the dead-letter topic that cannot be read back (garbage, foreign writer)."""


def parse_dead_letter(raw: bytes | None) -> DeadLetter:
    """Decode one dead-letter value and check that it names a topic to replay to.

    Raises:
        BadDeadLetter: Not a dead-letter record (not JSON, wrong schema, no original topic).
    """
    try:
        record = decode_dead_letter(raw, _LIMITS)
    except InvalidEvent as exc:
        raise BadDeadLetter(f"not a dead-letter record ({exc.reason}: {exc.detail})") from None
    topic = record.original_topic
    if not _TOPIC_RE.match(topic) or topic in (".", ".."):
        raise BadDeadLetter(f"original_topic {topic[:80]!r} is not a topic name")
    return record


def _field(text: str | None, b64: str | None, name: str) -> bytes | None:
    if text is not None and b64 is not None:
        raise BadDeadLetter(f"both {name}_text and {name}_base64 are set")
    if text is not None:
        return text.encode("utf-8")
    if b64 is None:
        return None
    try:
        return base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise BadDeadLetter(f"{name}_base64 is not valid base64") from None


def original_bytes(record: DeadLetter) -> tuple[bytes | None, bytes | None]:
    """The original ``(key, value)`` of an untruncated record, checked against its size and hash.

    A value that is None (neither text nor base64 nor hash) was a tombstone.

    Raises:
        BadDeadLetter: The record is truncated, its raw fields are malformed, or the recovered
            value does not match ``value_size``/``value_sha256``.
    """
    if record.truncated:
        raise BadDeadLetter("truncated: the original bytes were not kept")
    key = _field(record.key_text, record.key_base64, "key")
    value = _field(record.value_text, record.value_base64, "value")
    if value is None:
        if record.value_sha256 is not None or record.value_size:
            raise BadDeadLetter("value_text and value_base64 missing, but a value is described")
        return key, None
    if len(value) != record.value_size:
        raise BadDeadLetter(f"value is {len(value)} bytes, value_size says {record.value_size}")
    digest = record.value_sha256
    if digest is not None and hashlib.sha256(value).hexdigest() != digest.lower():
        raise BadDeadLetter("value does not match value_sha256")
    return key, value


def skip_reason(record: DeadLetter, named: frozenset[ReasonCode]) -> str | None:
    """Why ``record`` must not be replayed, or None when it may be.

    Args:
        record: A parsed dead-letter record.
        named: The reasons the operator asked for by name (``--reason``).
    """
    if record.truncated:
        sha = record.value_sha256 or ""
        shown = f", sha256 {sha[:16]}..." if _SHA256_RE.match(sha) else ""
        return (
            f"truncated: only a prefix of the original was kept ({record.value_size} bytes"
            f"{shown}); re-send it from the producer"
        )
    if record.reason in DATA_ERROR_REASONS and record.reason not in named:
        return f"data error: re-sent only with --reason {record.reason}"
    return None


@dataclass(frozen=True)
class Selection:
    """Which dead-letter records a command looks at.

    Attributes:
        reasons: Reasons to keep; empty keeps all.
        topics: Original (full) topic names to keep; empty keeps all.
        since_ms: Keep records dead-lettered at or after this time (epoch ms).
        until_ms: Keep records dead-lettered at or before this time (epoch ms).
        from_offsets: First dead-letter offset to read, per partition; key None: any partition.
        to_offsets: Last dead-letter offset to read (inclusive), per partition or None.
    """

    reasons: frozenset[ReasonCode] = frozenset()
    topics: frozenset[str] = frozenset()
    since_ms: int | None = None
    until_ms: int | None = None
    from_offsets: tuple[tuple[int | None, int], ...] = ()
    to_offsets: tuple[tuple[int | None, int], ...] = ()

    def first_offset(self, partition: int) -> int:
        """First dead-letter offset to read in ``partition`` (0: the beginning)."""
        first = _bound(self.from_offsets, partition)
        return 0 if first is None else first

    def last_offset(self, partition: int) -> int | None:
        """Last dead-letter offset to read in ``partition``, None for the end."""
        return _bound(self.to_offsets, partition)

    def in_time(self, ts: int) -> bool:
        """Whether a record dead-lettered at ``ts`` lies in the time range."""
        return (self.since_ms is None or ts >= self.since_ms) and (
            self.until_ms is None or ts <= self.until_ms
        )

    def matches(self, record: DeadLetter) -> bool:
        """Whether ``record`` passes the reason, topic and time filters."""
        return (
            (not self.reasons or record.reason in self.reasons)
            and (not self.topics or record.original_topic in self.topics)
            and self.in_time(record.ts)
        )


def _bound(bounds: tuple[tuple[int | None, int], ...], partition: int) -> int | None:
    # A partition's own bound wins over the one for every partition.
    found = None
    for part, offset in bounds:
        if part == partition:
            return offset
        if part is None:
            found = offset
    return found


def parse_offset(text: str) -> tuple[int | None, int]:
    """``"N"`` (every partition) or ``"P:N"`` (partition P) -> ``(P or None, N)``.

    Raises:
        ValueError: Not of that form, or negative.
    """
    part_text, sep, offset_text = text.strip().rpartition(":")
    try:
        offset = int(offset_text)
        part = int(part_text) if sep else None
    except ValueError:
        raise ValueError(f"expected OFFSET or PARTITION:OFFSET, got {text!r}") from None
    if offset < 0 or (part is not None and part < 0):
        raise ValueError(f"offsets and partitions must be >= 0, got {text!r}")
    return part, offset


def parse_time(text: str) -> int:
    """Epoch milliseconds, or an ISO 8601 time (UTC when it names no zone) -> epoch ms.

    Raises:
        ValueError: Neither, or an integer that looks like epoch seconds.
    """
    text = text.strip()
    try:
        value = int(text)
    except ValueError:
        pass
    else:
        if 0 < value < _MIN_MS:
            raise ValueError(
                f"{text} looks like epoch seconds; give epoch milliseconds ({value * 1000})"
            )
        if value < 0:
            raise ValueError(f"time must not be negative, got {text}")
        return value
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"expected epoch milliseconds or an ISO time (2026-01-01T12:00:00Z), got {text!r}"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)
