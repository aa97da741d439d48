"""A decoded recommendation request -> the :class:`Query` the recommender answers.

The one call an agent makes per request record while decoding a micro-batch
(:func:`query_for_request`): it picks the subject (user, or seed item for similar items), turns the
request's filter into an index :class:`~promptrec.index.AttributeFilter` and rejects what cannot
be answered with an :class:`~promptrec.events.exceptions.InvalidEvent` to dead-letter.
"""

from __future__ import annotations

from collections.abc import Container, Sequence

from promptrec.events.exceptions import InvalidEvent, ReasonCode
from promptrec.events.schemas import RecommendationRequest, RequestFilter
from promptrec.index import AttributeFilter
from promptrec.serving.recommender import Query

__all__ = ["attribute_filter", "query_for_request"]


def attribute_filter(
    request_filter: RequestFilter | None, filterable: frozenset[str] | None
) -> AttributeFilter | None:
    """The index filter of a request's ``filter`` (None when there is none).

    Raises:
        InvalidEvent: ``schema`` when it names an attribute the index does not keep bitmaps
            for (``PROMPTREC_INDEX_FILTER_ATTRIBUTES``).
    """
    if request_filter is None:
        return None
    conditions = request_filter.conditions
    if filterable is not None:
        unknown = sorted(set(conditions) - filterable)
        if unknown:
            raise InvalidEvent(
                ReasonCode.schema,
                f"filter: attribute(s) {', '.join(map(repr, unknown))} not filterable; "
                f"filterable: {', '.join(sorted(filterable))}",
            )
    try:
        return AttributeFilter.build(conditions, request_filter.exclude_item_ids)
    except ValueError as exc:  # the schema already bounds values; kept for direct callers
        raise InvalidEvent(ReasonCode.schema, f"filter: {exc}") from None


def query_for_request(
    request: RecommendationRequest,
    recent: Sequence[str],
    seen: frozenset[str],
    default_k: int,
    known_item: Container[str],
    filterable: frozenset[str] | None = None,
) -> Query:
    """The query of one request.

    Args:
        request: The decoded request.
        recent: The user's recent item ids, oldest first (empty without a user).
        seen: Items the user interacted with (excluded from user answers).
        default_k: ``k`` when the request gives none.
        known_item: The catalog (``engine.index``): a similar-items seed must be in it.
        filterable: The attribute keys with bitmaps (None: every key).

    Raises:
        InvalidEvent: ``unknown_item`` for a seed item not in the catalog; ``schema`` for a
            filter on an attribute that is not filterable.
    """
    flt = attribute_filter(request.filter, filterable)
    k = request.k or default_k
    if request.item_id is not None:
        if request.item_id not in known_item:
            raise InvalidEvent(
                ReasonCode.unknown_item, f"item {request.item_id!r} not in the catalog"
            )
        # Similar items ignore the user's history: "more like this", not "more for you".
        return Query(request.user_id, (), frozenset(), k, request.item_id, flt, request.explain)
    return Query(request.user_id, recent, seen, k, None, flt, request.explain)
