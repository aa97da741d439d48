"""Errors of event decoding and the bounded set of dead-letter reasons."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["EventError", "InvalidEvent", "ReasonCode"]


class ReasonCode(StrEnum):
    """Why an event was rejected.

    The set is closed on purpose: the values are used as a Prometheus label and as the
    ``reason`` of dead-letter records, so adding one is an API change.
    """

    invalid_json = "invalid_json"
    """The value is not parseable JSON."""
    not_an_object = "not_an_object"
    """The JSON value is not an object (a list, a string, ``null`` ...)."""
    schema = "schema"
    """A field is missing, mistyped or outside its constraints."""
    unknown_type = "unknown_type"
    """An interaction ``type`` outside the known set."""
    too_large = "too_large"
    """The raw value is longer than the configured byte limit."""
    bad_timestamp = "bad_timestamp"
    """The event time is negative, too old or too far in the future."""
    non_finite = "non_finite"
    """A number is NaN or infinite (``NaN``/``Infinity`` literals or an overflowing float)."""
    empty_text = "empty_text"
    """An item has neither title nor text, so there is nothing to encode."""
    empty_value = "empty_value"
    """A null value (tombstone) or an empty value where a record is required."""
    duplicate_event = "duplicate_event"
    """An event id that was already processed."""
    processing_error = "processing_error"
    """The event was valid but processing it failed."""
    bad_encoding = "bad_encoding"
    """The value is not valid UTF-8 (or holds lone surrogate escapes)."""
    unknown_item = "unknown_item"
    """A valid event names an item the catalog does not hold."""
    unknown_user = "unknown_user"
    """A valid event names a user with no profile and no history."""
    bad_model_update = "bad_model_update"
    """A model-updates record that is not a head delta this worker can apply."""


class EventError(Exception):
    """Base class of every error raised by ``promptrec.events``."""


class InvalidEvent(EventError):
    """An event that cannot be decoded or validated; it belongs in the dead-letter topic.

    Attributes:
        reason: The bounded reason code (metric label, dead-letter ``reason``).
        detail: Human-readable explanation; never contains the raw value itself.
    """

    def __init__(self, reason: ReasonCode, detail: str) -> None:
        # Both parts go to Exception.args so that the error survives pickling.
        super().__init__(reason, detail)
        self.reason = ReasonCode(reason)
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"
