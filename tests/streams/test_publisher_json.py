"""Recommendation records: msgspec JSON equal to the stdlib's, the NaN guard, cheap unique ids."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from promptrec.events.schemas import MAX_ID_CHARS, Recommendation
from promptrec.serving.explain import Explanation, item_entries
from promptrec.streams.publisher import recommendation_ids, recommendation_json

ARGS = ("rec-1", "user-é", [("i1", 0.5), ("i2", -1.25e-7)], 3, "interaction", "e1",
        1767225600000, 1767225600012, "host:1")  # fmt: skip


def _stdlib(*args: object, **kw: object) -> bytes:
    """What the worker published before (stdlib json, the same dict)."""
    rec_id, user, items, version, source, source_id, ts, generated, worker = args
    record: dict[str, object] = {"recommendation_id": rec_id}
    if user:
        record["user_id"] = user
    if kw.get("item_id") is not None:
        record["item_id"] = kw["item_id"]
    record["items"] = item_entries(items, kw.get("explanations"))  # type: ignore[arg-type]
    record.update(model_version=version, source=source, source_event_id=source_id,
                  source_ts=ts, generated_at=generated, worker=worker)  # fmt: skip
    if kw.get("experiment") is not None:
        record.update(experiment=kw["experiment"], arm=kw["arm"])
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
    return dumps(record).encode()


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"item_id": "seed-1"},
        {"experiment": "exp", "arm": "b"},
        {
            "explanations": [
                Explanation("similar to items you interacted with", ("i0",)),
                Explanation("popular now"),
            ]
        },
    ],
)
def test_same_document_as_the_stdlib_encoder(kw: dict[str, object]) -> None:
    raw = recommendation_json(*ARGS, **kw)  # type: ignore[arg-type]
    old = _stdlib(*ARGS, **kw)
    assert json.loads(raw) == json.loads(old)
    assert list(json.loads(raw)) == list(json.loads(old))  # key order too
    assert "é" in raw.decode("utf-8")  # UTF-8, not \u escapes
    Recommendation.model_validate_json(raw)


def test_numpy_scores_are_plain_numbers() -> None:
    items = [("i1", np.float64(0.25)), ("i2", np.float32(0.5))]
    raw = recommendation_json("r", "u", items, 1, "interaction", "e", 1, 2, "w")  # type: ignore[arg-type]
    assert [e["score"] for e in json.loads(raw)["items"]] == [0.25, 0.5]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, np.float64("nan")])
def test_non_finite_score_raises_as_before(bad: float) -> None:
    items = [("i1", 0.5), ("i2", bad)]
    with pytest.raises(ValueError, match="not JSON compliant"):
        recommendation_json("r", "u", items, 1, "interaction", "e", 1, 2, "w")
    with pytest.raises(ValueError, match="not JSON compliant"):
        _stdlib("r", "u", items, 1, "interaction", "e", 1, 2, "w")


def test_non_finite_numpy_float32_raises_too() -> None:
    # The stdlib could not encode a float32 at all (TypeError); now it is checked like a float.
    with pytest.raises(ValueError, match="not JSON compliant"):
        recommendation_json("r", "u", [("i", np.float32("inf"))], 1, "interaction", "e", 1, 2, "w")  # type: ignore[list-item]


def test_recommendation_ids_are_unique_valid_ids() -> None:
    first, second = recommendation_ids(), recommendation_ids()
    ids = [first() for _ in range(10_000)] + [second() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[0-9a-f]{16}-[0-9a-f]+", i) for i in ids)
    assert ids[0].split("-")[0] != ids[-1].split("-")[0]  # one random prefix per generator
    assert max(map(len, ids)) <= MAX_ID_CHARS
