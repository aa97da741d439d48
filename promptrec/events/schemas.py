"""Event schemas of every topic, and the one decoding path from raw Kafka bytes to records.

Every decode function runs the same checks in the same order (:func:`_decode`): size, UTF-8,
JSON, object, NaN/Infinity, pydantic validation, event-time bounds. Each failure raises
:class:`~promptrec.streams.exceptions.InvalidEvent` with a bounded :class:`ReasonCode`.
Timestamps (``ts``) are epoch milliseconds; floats are accepted and rounded. A record's ``ts``,
where present (optional on items and users), must lie in ``[limits.min_ts, limits.max_ts(now)]``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import socket
import time
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from pydantic import (
    AliasChoices,
    AllowInfNan,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from promptrec.events.exceptions import InvalidEvent, ReasonCode

__all__ = [
    "DEFAULT_MAX_TEXT_CHARS",
    "EXAMPLES",
    "REQUEST_EXAMPLES",
    "TOPIC_MODELS",
    "DeadLetter",
    "FeedbackEvent",
    "InteractionEvent",
    "ItemEvent",
    "Limits",
    "Recommendation",
    "RecommendationRequest",
    "RequestFilter",
    "ScoredItem",
    "UserEvent",
    "decode",
    "decode_dead_letter",
    "decode_feedback",
    "decode_interaction",
    "decode_item",
    "decode_recommendation",
    "decode_request",
    "decode_user",
    "json_schemas",
    "now_ms",
    "to_json_bytes",
    "worker_id",
]

DEFAULT_MAX_TEXT_CHARS = 4000
MAX_ID_CHARS = 256
_MAX_K_WITHOUT_CONTEXT = 1000  # StreamSettings.max_k's upper bound
_MAX_DETAIL_CHARS = 1000
_MAX_FILTER_KEYS = 8  # ServingSettings.filter_max_keys' default
_MAX_FILTER_VALUES = 64
_MAX_FILTER_EXCLUDES = 1000


def now_ms() -> int:
    """Current wall-clock time in epoch milliseconds."""
    return time.time_ns() // 1_000_000


def worker_id() -> str:
    """``host:pid`` of this process, stamped on recommendations and dead letters."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _to_epoch_ms(value: Any) -> Any:
    # bool is an int subclass, and pydantic's lax int would accept "123"; both are mistakes here.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PydanticCustomError("int_type", "Input should be epoch milliseconds (a number)")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise PydanticCustomError("finite_number", "Input should be a finite number")
        value = round(value)
    if value < 0:
        raise PydanticCustomError("bad_timestamp", "Event time must not be negative")
    return value


Id = Annotated[
    str,
    Strict(),  # ints are not silently taken as ids
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_ID_CHARS),
]
EpochMs = Annotated[int, BeforeValidator(_to_epoch_ms)]
FiniteFloat = Annotated[float, Strict(), AllowInfNan(False)]
AttrValue = Annotated[str, Strict()] | Annotated[int, Strict()] | FiniteFloat | bool | list[str]
Attributes = dict[str, AttrValue]
FilterScalar = (
    Annotated[str, Strict(), StringConstraints(max_length=MAX_ID_CHARS)]
    | Annotated[int, Strict()]
    | FiniteFloat
    | Annotated[bool, Strict()]
)
Reason = Literal[
    "similar to items you interacted with", "popular now", "similar to the requested item"
]


def _omit_none(value: object) -> bool:
    """``exclude_if`` of optional fields added later: absent, not null, so older output is kept."""
    return value is None


def _omit_empty(value: object) -> bool:
    """``exclude_if`` of ids that became optional: "" (the default) means absent."""
    return value == ""


def _no_default(schema: dict[str, Any]) -> None:
    """JSON schema of such an id: optional, but "" is not a value to send."""
    schema.pop("default", None)


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ItemEvent(_Record):
    """A catalog item (compacted ``items`` topic, keyed by ``item_id``).

    ``title`` and ``text`` are stripped and cut to ``max_text_chars`` (validation context,
    default 4000): long text is truncated, never rejected. At least one of them must be
    non-empty unless ``deleted`` is set.
    """

    item_id: Id
    title: Annotated[str, Strict()] = ""
    text: Annotated[str, Strict()] = Field(
        default="", validation_alias=AliasChoices("text", "description")
    )
    attributes: Attributes = Field(default_factory=dict)
    deleted: Annotated[bool, Strict()] = False
    ts: EpochMs | None = None

    @field_validator("title", "text", mode="after")
    @classmethod
    def _cut(cls, value: str, info: ValidationInfo) -> str:
        limit = (info.context or {}).get("max_text_chars", DEFAULT_MAX_TEXT_CHARS)
        return value.strip()[:limit]

    @model_validator(mode="after")
    def _has_text(self) -> ItemEvent:
        if not self.deleted and not self.title and not self.text:
            raise PydanticCustomError("empty_text", "Item has neither title nor text")
        return self


class UserEvent(_Record):
    """A user profile (compacted ``users`` topic, keyed by ``user_id``)."""

    user_id: Id
    attributes: Attributes = Field(default_factory=dict)
    ts: EpochMs | None = None


class InteractionEvent(_Record):
    """A user acting on an item (``interactions`` topic, keyed by ``user_id``)."""

    event_id: Id
    user_id: Id
    item_id: Id
    type: Literal["click", "view", "purchase", "rating"]
    value: FiniteFloat | None = None
    ts: EpochMs


class FeedbackEvent(_Record):
    """Outcome of a recommended item; at least one of ``label`` and ``reward`` is set."""

    event_id: Id
    user_id: Id
    item_id: Id
    recommendation_id: Id | None = None
    label: Annotated[int, Strict(), Field(ge=0, le=1)] | None = None
    reward: FiniteFloat | None = None
    ts: EpochMs

    @model_validator(mode="after")
    def _has_target(self) -> FeedbackEvent:
        if self.label is None and self.reward is None:
            raise PydanticCustomError("missing_target", "Feedback needs a label or a reward")
        return self

    @property
    def target(self) -> float:
        """Training target in [0, 1]: the label, else 1.0 for a positive reward."""
        if self.label is not None:
            return float(self.label)
        return 1.0 if (self.reward or 0.0) > 0 else 0.0


class RequestFilter(_Record):
    """Attribute conditions of a request: ``{"category": ["books", "music"], "year": 2020}``.

    Each key other than ``exclude_item_ids`` names a catalog attribute and holds one value
    (equality) or a list (membership); an item passes when every key matches (a list-valued
    attribute such as ``tags`` matches when any element does). ``exclude_item_ids`` are never
    returned. Sizes are bounded by ``max_filter_keys``, ``max_filter_values`` and
    ``max_filter_excludes`` (validation context).
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    exclude_item_ids: list[Id] = Field(default_factory=list)
    __pydantic_extra__: dict[str, FilterScalar | list[FilterScalar]] = Field(init=False)

    @model_validator(mode="after")
    def _bounded(self, info: ValidationInfo) -> RequestFilter:
        context = info.context or {}
        max_keys = context.get("max_filter_keys", _MAX_FILTER_KEYS)
        max_values = context.get("max_filter_values", _MAX_FILTER_VALUES)
        max_excludes = context.get("max_filter_excludes", _MAX_FILTER_EXCLUDES)
        conditions = self.conditions
        if len(conditions) > max_keys:
            raise PydanticCustomError(
                "filter_bounds", "at most {n} attribute keys, got {got}",
                {"n": max_keys, "got": len(conditions)},
            )  # fmt: skip
        for key, values in conditions.items():
            if not key.strip() or len(key) > MAX_ID_CHARS:
                raise PydanticCustomError("filter_bounds", "attribute keys must be 1-256 chars")
            if not 1 <= len(values) <= max_values:
                raise PydanticCustomError(
                    "filter_bounds", "key {key} needs 1 to {n} values, got {got}",
                    # pydantic fills {placeholders} with str(); quote the key here.
                    {"key": repr(key), "n": max_values, "got": len(values)},
                )  # fmt: skip
        if len(self.exclude_item_ids) > max_excludes:
            raise PydanticCustomError(
                "filter_bounds", "at most {n} exclude_item_ids, got {got}",
                {"n": max_excludes, "got": len(self.exclude_item_ids)},
            )  # fmt: skip
        return self

    @property
    def conditions(self) -> dict[str, list[str | int | float | bool]]:
        """``key -> allowed values`` (a single value as a one-element list)."""
        extra = self.model_extra or {}
        return {k: list(v) if isinstance(v, list) else [v] for k, v in extra.items()}


class RecommendationRequest(_Record):
    """An explicit ask for recommendations; ``k`` is bounded by ``max_k`` (context).

    ``user_id`` asks for the user's recommendations, ``item_id`` for the items most similar to
    that item (the answer is keyed by ``user_id`` when both are given); at least one is
    required. ``explain`` adds ``because``/``reason`` to each answered item; ``filter``
    restricts the answer to catalog items whose attributes match.
    """

    request_id: Id
    # Absent user_id reads as "" (never a valid id), so code that keys by it still types as str.
    user_id: Id = Field(
        default="",
        exclude_if=_omit_empty,
        description="Required unless item_id is given.",
        json_schema_extra=_no_default,
    )
    item_id: Id | None = Field(default=None, exclude_if=_omit_none)
    k: Annotated[int, Strict(), Field(ge=1)] | None = None
    explain: Annotated[bool, Strict()] = Field(default=False, exclude_if=lambda v: v is False)
    filter: RequestFilter | None = Field(default=None, exclude_if=_omit_none)
    ts: EpochMs

    @field_validator("k", mode="after")
    @classmethod
    def _k_bound(cls, value: int | None, info: ValidationInfo) -> int | None:
        max_k = (info.context or {}).get("max_k", _MAX_K_WITHOUT_CONTEXT)
        if value is not None and value > max_k:
            raise PydanticCustomError("less_than_equal", "k must be <= {max_k}", {"max_k": max_k})
        return value

    @model_validator(mode="after")
    def _has_subject(self) -> RecommendationRequest:
        if not self.user_id and self.item_id is None:
            raise PydanticCustomError("missing_subject", "A request needs a user_id or an item_id")
        return self


class ScoredItem(_Record):
    """One recommended item with its score; ``because``/``reason`` only when explained.

    ``because``: up to 3 item ids of the user's recent history that contributed most (the
    requested item for similar-item answers); ``reason``: why the item is there.
    """

    item_id: Id
    score: FiniteFloat
    because: Annotated[list[Id], Field(max_length=3)] | None = Field(
        default=None, exclude_if=_omit_none
    )
    reason: Reason | None = Field(default=None, exclude_if=_omit_none)


class Recommendation(_Record):
    """A ranked list for one user (``recommendations`` topic, keyed by ``user_id``; for an
    item-only similar-items request by ``item_id``, and ``user_id`` is absent)."""

    recommendation_id: Id
    user_id: Id = Field(
        default="",
        exclude_if=_omit_empty,
        description="Absent in answers to item-only (similar items) requests.",
        json_schema_extra=_no_default,
    )
    item_id: Id | None = Field(default=None, exclude_if=_omit_none)  # similar-item answers
    items: list[ScoredItem]
    model_version: Annotated[int, Strict(), Field(ge=0)]
    source: Literal["interaction", "request"]
    source_event_id: Id
    source_ts: EpochMs
    generated_at: EpochMs
    worker: str
    experiment: Id | None = Field(default=None, exclude_if=_omit_none)
    arm: Id | None = Field(default=None, exclude_if=_omit_none)

    @model_validator(mode="after")
    def _has_subject(self) -> Recommendation:
        if not self.user_id and self.item_id is None:
            raise PydanticCustomError("missing_subject", "A recommendation needs a user or item")
        return self


class DeadLetter(_Record):
    """A rejected record with its raw bytes (as UTF-8 text when possible, else base64)."""

    original_topic: str
    partition: Annotated[int, Strict()]
    offset: Annotated[int, Strict()]
    key_text: str | None = None
    key_base64: str | None = None
    value_text: str | None = None
    value_base64: str | None = None
    value_size: Annotated[int, Strict(), Field(ge=0)]
    value_sha256: str | None = None
    truncated: bool = False
    reason: ReasonCode
    detail: str
    worker: str
    ts: EpochMs

    @classmethod
    def build(
        cls,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        reason: ReasonCode,
        detail: str,
        worker: str,
        max_bytes: int,
        *,
        ts: int | None = None,
    ) -> DeadLetter:
        """Wrap a rejected record; key and value are each cut to ``max_bytes`` raw bytes.

        ``value_size`` is the original length and ``value_sha256`` the hash of the whole original
        value, so a cut record can still be matched to its source; ``truncated`` tells whether
        anything was cut. ``ts`` defaults to now.
        """
        key_text, key_b64, key_cut = _raw_field(key, max_bytes)
        value_text, value_b64, value_cut = _raw_field(value, max_bytes)
        return cls(
            original_topic=topic,
            partition=partition,
            offset=offset,
            key_text=key_text,
            key_base64=key_b64,
            value_text=value_text,
            value_base64=value_b64,
            value_size=len(value) if value is not None else 0,
            value_sha256=hashlib.sha256(bytes(value)).hexdigest() if value is not None else None,
            truncated=key_cut or value_cut,
            reason=reason,
            detail=detail[:_MAX_DETAIL_CHARS],
            worker=worker,
            ts=now_ms() if ts is None else ts,
        )


def _raw_field(raw: bytes | None, max_bytes: int) -> tuple[str | None, str | None, bool]:
    """``(text, base64, cut)`` of raw bytes; exactly one of text/base64 is set unless None."""
    if raw is None:
        return None, None, False
    raw = bytes(raw)
    cut = len(raw) > max_bytes
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return None, base64.b64encode(raw[:max_bytes]).decode("ascii"), cut
    # The whole value is valid UTF-8, so only the last character can be split by the cut.
    return raw[:max_bytes].decode("utf-8", errors="ignore"), None, cut


TOPIC_MODELS: dict[str, type[BaseModel]] = {
    "items": ItemEvent,
    "users": UserEvent,
    "interactions": InteractionEvent,
    "feedback": FeedbackEvent,
    "recommendation-requests": RecommendationRequest,
    "recommendations": Recommendation,
    "dead-letter": DeadLetter,
}
"""Logical topic name (without the configured prefix) -> record model."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Decoding limits, built once per worker (``StreamSettings.limits``).

    Attributes:
        max_bytes: Largest raw value of an event (interactions, feedback, requests, ...).
        min_ts: Oldest accepted ``ts`` (epoch ms).
        max_future_ms: How far past wall-clock time a ``ts`` may lie.
        max_k: Largest ``k`` a recommendation request may ask for.
        max_text_chars: Item title and text are cut to this many characters.
        max_item_bytes: Largest raw items/users record; None means ``max_bytes``.
        max_filter_keys: Most attribute keys in a request's ``filter``.
        max_filter_values: Most values per filter key.
        max_filter_excludes: Most ``filter.exclude_item_ids``.
    """

    max_bytes: int
    min_ts: int = 0
    max_future_ms: int = 86_400_000
    max_k: int = 100
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS
    max_item_bytes: int | None = None
    max_filter_keys: int = _MAX_FILTER_KEYS
    max_filter_values: int = _MAX_FILTER_VALUES
    max_filter_excludes: int = _MAX_FILTER_EXCLUDES

    def max_ts(self, now: int | None = None) -> int:
        """Newest accepted event time for wall-clock ``now`` (epoch ms, default: now)."""
        return (now_ms() if now is None else now) + self.max_future_ms

    def bytes_for(self, model: type[BaseModel]) -> int:
        """Byte limit of ``model``'s records: catalog records may be larger than events."""
        if model in (ItemEvent, UserEvent) and self.max_item_bytes is not None:
            return self.max_item_bytes
        return self.max_bytes


_M = TypeVar("_M", bound=BaseModel)


def _decode(model: type[_M], raw: bytes | None, limits: Limits, max_ts: int | None) -> _M:
    """The single decoding path shared by every topic."""
    if raw is None:
        raise InvalidEvent(ReasonCode.empty_value, "null value (tombstone) where a record is due")
    if len(raw) == 0:
        raise InvalidEvent(ReasonCode.empty_value, "empty value")
    if len(raw) > (max_bytes := limits.bytes_for(model)):
        raise InvalidEvent(ReasonCode.too_large, f"{len(raw)} bytes > limit {max_bytes}")
    try:
        text = bytes(raw).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEvent(ReasonCode.bad_encoding, f"not UTF-8 at byte {exc.start}") from None
    try:
        obj = _loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, int digit limit, deep nesting
        raise InvalidEvent(ReasonCode.invalid_json, str(exc)[:200]) from None
    if not isinstance(obj, dict):
        raise InvalidEvent(ReasonCode.not_an_object, f"JSON {type(obj).__name__}, not an object")
    _check_values(obj, escapes="\\u" in text)
    context = {
        "max_k": limits.max_k,
        "max_text_chars": limits.max_text_chars,
        "max_filter_keys": limits.max_filter_keys,
        "max_filter_values": limits.max_filter_values,
        "max_filter_excludes": limits.max_filter_excludes,
    }
    try:
        event = model.model_validate(obj, context=context)
    except ValidationError as exc:
        raise _invalid_from(exc) from None
    ts = getattr(event, "ts", None)
    if ts is None:
        return event
    if max_ts is None:
        max_ts = limits.max_ts()
    if not limits.min_ts <= ts <= max_ts:
        raise InvalidEvent(ReasonCode.bad_timestamp, _ts_detail(ts, limits.min_ts, max_ts))
    return event


_fast_loads = msgspec.json.decode


def _loads(text: str) -> Any:
    """``json.loads(text)``, parsed by msgspec when msgspec accepts it (~6x faster).

    Whatever msgspec parses, it parses to the same objects as the stdlib (ints of any size stay
    ints, floats round alike, the last duplicate key wins). It rejects a few documents the stdlib
    accepts (NaN/Infinity, numbers that overflow to inf, lone surrogate escapes), which
    :func:`_check_values` classifies as ``non_finite`` / ``bad_encoding``: every document msgspec
    rejects is parsed again by the stdlib, so errors and their details are the stdlib's, as before.
    """
    try:
        return _fast_loads(text)
    except (msgspec.MsgspecError, RecursionError):
        return json.loads(text)


def _ts_detail(ts: int, min_ts: int, max_ts: int) -> str:
    """Why ``ts`` is out of ``[min_ts, max_ts]``, naming the unit mistake when it is one.

    Epoch seconds (and, less often, microseconds) instead of milliseconds is the most common
    producer mistake; a bare "older than" leaves the user guessing, so say what would fit.
    """
    if ts < min_ts and min_ts <= ts * 1000 <= max_ts:
        return f"ts {ts} looks like epoch seconds; ts must be epoch milliseconds ({ts * 1000})"
    if ts > max_ts and min_ts <= ts // 1000 <= max_ts:
        return (
            f"ts {ts} looks like epoch microseconds; ts must be epoch milliseconds ({ts // 1000})"
        )
    if ts < min_ts:
        return f"ts {ts} older than {min_ts} (ts is epoch milliseconds)"
    return f"ts {ts} later than {max_ts} (ts is epoch milliseconds)"


def _check_values(obj: dict[str, Any], *, escapes: bool) -> None:
    """Reject NaN/Infinity (which :func:`json.loads` accepts) and lone surrogate escapes."""
    # Iterative walk: json.loads allows nesting deeper than a recursive walk could follow.
    stack: list[tuple[str, Any]] = [("", obj)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidEvent(ReasonCode.non_finite, f"{path or 'value'} is {value}")
        if escapes and isinstance(value, str) and not _encodable(value):
            raise InvalidEvent(ReasonCode.bad_encoding, f"{path} holds a lone surrogate")
        if isinstance(value, dict):
            for key, item in value.items():
                if escapes and not _encodable(key):
                    raise InvalidEvent(ReasonCode.bad_encoding, "a key holds a lone surrogate")
                stack.append((f"{path}.{key}" if path else key, item))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", item) for i, item in enumerate(value))


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_REASON_BY_ERROR_TYPE = {
    "finite_number": ReasonCode.non_finite,
    "empty_text": ReasonCode.empty_text,
    "bad_timestamp": ReasonCode.bad_timestamp,
}


def _invalid_from(exc: ValidationError) -> InvalidEvent:
    """Map pydantic errors to one reason; structural (schema) errors win over specific ones."""
    errors = exc.errors(include_url=False)
    reasons = []
    for err in errors:
        reason = _REASON_BY_ERROR_TYPE.get(err["type"], ReasonCode.schema)
        if err["type"] == "literal_error" and err["loc"] == ("type",):
            reason = ReasonCode.unknown_type if isinstance(err["input"], str) else reason
        reasons.append(reason)
    reason = ReasonCode.schema if ReasonCode.schema in reasons else reasons[0]
    parts = [f"{'.'.join(map(str, e['loc'])) or 'record'}: {e['msg']}" for e in errors[:3]]
    if len(errors) > 3:
        parts.append(f"(+{len(errors) - 3} more)")
    return InvalidEvent(reason, "; ".join(parts)[:_MAX_DETAIL_CHARS])


def decode_item(raw: bytes | None, limits: Limits, *, max_ts: int | None = None) -> ItemEvent:
    """Decode an ``items`` value (a tombstone, None, raises ``empty_value``: handle it first)."""
    return _decode(ItemEvent, raw, limits, max_ts)


def decode_user(raw: bytes | None, limits: Limits, *, max_ts: int | None = None) -> UserEvent:
    """Decode a ``users`` value (a tombstone, None, raises ``empty_value``: handle it first)."""
    return _decode(UserEvent, raw, limits, max_ts)


def decode_interaction(
    raw: bytes | None, limits: Limits, *, max_ts: int | None = None
) -> InteractionEvent:
    """Decode an ``interactions`` value."""
    return _decode(InteractionEvent, raw, limits, max_ts)


def decode_feedback(
    raw: bytes | None, limits: Limits, *, max_ts: int | None = None
) -> FeedbackEvent:
    """Decode a ``feedback`` value."""
    return _decode(FeedbackEvent, raw, limits, max_ts)


def decode_request(
    raw: bytes | None, limits: Limits, *, max_ts: int | None = None
) -> RecommendationRequest:
    """Decode a ``recommendation-requests`` value; ``k`` above ``limits.max_k``: schema error."""
    return _decode(RecommendationRequest, raw, limits, max_ts)


def decode_recommendation(
    raw: bytes | None, limits: Limits, *, max_ts: int | None = None
) -> Recommendation:
    """Decode a ``recommendations`` value (clients, tests)."""
    return _decode(Recommendation, raw, limits, max_ts)


def decode_dead_letter(
    raw: bytes | None, limits: Limits, *, max_ts: int | None = None
) -> DeadLetter:
    """Decode a ``dead-letter`` value (operators, tests)."""
    return _decode(DeadLetter, raw, limits, max_ts)


def decode(
    topic: str, raw: bytes | None, limits: Limits, *, max_ts: int | None = None
) -> BaseModel:
    """Decode a value of logical ``topic`` (a key of :data:`TOPIC_MODELS`).

    Every ``decode_*`` function takes ``max_ts``, the newest accepted ``ts``; compute it once
    per batch with :meth:`Limits.max_ts` (default: ``limits.max_ts()`` at call time).

    Raises:
        KeyError: ``topic`` is not one of :data:`TOPIC_MODELS`.
        InvalidEvent: The value is rejected.
    """
    return _decode(TOPIC_MODELS[topic], raw, limits, max_ts)


def to_json_bytes(model: BaseModel) -> bytes:
    """Compact UTF-8 JSON of a record (field names, not aliases)."""
    return model.model_dump_json().encode("utf-8")


def json_schemas() -> dict[str, dict[str, Any]]:
    """JSON schema of every topic's records, by logical topic name."""
    return {topic: model.model_json_schema() for topic, model in TOPIC_MODELS.items()}


_TS = 1767225600000  # 2026-01-01T00:00:00Z
EXAMPLES: dict[str, dict[str, Any]] = {
    "items": {
        "item_id": "item-0001",
        "title": "The Silent Harbor",
        "text": "An atmospheric mystery novel about a ferry captain who finds a stranger's diary.",
        "attributes": {"category": "books", "tags": ["mystery", "detective"], "price": 14.99},
        "ts": _TS,
    },
    "users": {
        "user_id": "user-001",
        "attributes": {"age_band": "25-34", "country": "DE", "interests": ["books", "outdoor"]},
        "ts": _TS,
    },
    "interactions": {
        "event_id": "evt-00001",
        "user_id": "user-001",
        "item_id": "item-0001",
        "type": "rating",
        "value": 5.0,
        "ts": _TS + 4000,
    },
    "feedback": {
        "event_id": "fb-00001",
        "user_id": "user-001",
        "item_id": "item-0002",
        "recommendation_id": "rec-7f3a",
        "label": 1,
        "reward": 1.0,
        "ts": _TS + 9000,
    },
    "recommendation-requests": {
        "request_id": "req-00001",
        "user_id": "user-001",
        "k": 5,
        "ts": _TS,
    },
    "recommendations": {
        "recommendation_id": "rec-7f3a",
        "user_id": "user-001",
        "items": [{"item_id": "item-0002", "score": 0.91}, {"item_id": "item-0017", "score": 0.87}],
        "model_version": 3,
        "source": "interaction",
        "source_event_id": "evt-00001",
        "source_ts": _TS + 4000,
        "generated_at": _TS + 4012,
        "worker": "worker-1:4242",
    },
    "dead-letter": {
        "original_topic": "promptrec.interactions",
        "partition": 2,
        "offset": 1041,
        "key_text": "user-001",
        "value_text": '{"event_id": "evt-9", "type": "like"}',
        "value_size": 37,
        "truncated": False,
        "reason": "unknown_type",
        "detail": "type: Input should be 'click', 'view', 'purchase' or 'rating'",
        "worker": "worker-1:4242",
        "ts": _TS + 5000,
    },
}
"""One valid record per logical topic (README, tests)."""

REQUEST_EXAMPLES: dict[str, dict[str, Any]] = {
    "explained": {"request_id": "req-00002", "user_id": "user-001", "explain": True, "ts": _TS},
    "similar-items": {"request_id": "req-00003", "item_id": "item-0001", "k": 5, "ts": _TS},
    "filtered": {
        "request_id": "req-00004",
        "user_id": "user-001",
        "filter": {"category": ["books", "music"], "exclude_item_ids": ["item-0002"]},
        "ts": _TS,
    },
    "explained-answer": {
        "recommendation_id": "rec-8b1c",
        "user_id": "user-001",
        "items": [
            {
                "item_id": "item-0017",
                "score": 0.87,
                "because": ["item-0001", "item-0009"],
                "reason": "similar to items you interacted with",
            },
            {"item_id": "item-0042", "score": 0.35, "reason": "popular now"},
        ],
        "model_version": 3,
        "source": "request",
        "source_event_id": "req-00002",
        "source_ts": _TS,
        "generated_at": _TS + 9,
        "worker": "worker-1:4242",
    },
}
"""Request and answer variants of issue 15 (README): decoded by the request/recommendation
decoders in the tests; :data:`EXAMPLES` keeps one plain record per topic."""
