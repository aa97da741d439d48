"""Poison input: 5% garbage in every input topic; all of it dead-lettered, the rest applied.

Garbage kinds: invalid JSON, binary junk, missing and mistyped fields, 10 MB values, unknown
item ids, NaN and infinite numbers, duplicate event ids, timestamps in 1970 and 2100. Every bad
record reaches the dead-letter topic with its original bytes (or, past the dead-letter size
limit, a prefix plus the length and SHA-256 of the whole value) and a reason; every valid record
has its effect; the worker process never restarts.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from promptrec.broker.embedded import EmbeddedBroker
from tests.pipeline_fixtures import Producer, Recorder, dead_letter_bytes, json_bytes, now_ms
from tests.streams.reliability import catalog, settings_for, start_worker

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BIG = 10 * 1024 * 1024
Garbage = tuple[str, str | None, bytes, str]  # logical topic, key, value, reason


def garbage_for(
    topic: str, valid: dict[str, Any], id_field: str, n: int, rng: random.Random
) -> list[Garbage]:
    """``n`` bad records for ``topic``, built from a valid one; cycles through the kinds."""
    key = valid.get("user_id") or valid.get("item_id")

    def with_(**kw: Any) -> dict[str, Any]:
        out = dict(valid)
        out[id_field] = uuid.uuid4().hex
        out.update(kw)
        return out

    def nan() -> bytes:
        field = "reward" if topic == "feedback" else "value" if topic == "interactions" else "k"
        if topic in ("items", "users"):
            return json_bytes(with_(attributes={"x": 1})).replace(b'"x": 1', b'"x": NaN')
        return json_bytes(with_(**{field: 1})).replace(
            f'"{field}": 1'.encode(), f'"{field}": NaN'.encode()
        )

    kinds: list[Callable[[], tuple[bytes, str]]] = [
        lambda: (b"{not json" + bytes([rng.randrange(33, 127)]), "invalid_json"),
        lambda: (bytes(rng.randrange(128, 256) for _ in range(64)), "bad_encoding"),
        lambda: (json_bytes({k: v for k, v in with_().items() if k != id_field}), "schema"),
        lambda: (json_bytes(with_(**{id_field: 12345})), "schema"),
        lambda: (nan(), "non_finite"),
        lambda: (json_bytes(with_())[:-1] + b', "score": Infinity}', "non_finite"),
    ]
    if topic not in ("items", "users"):
        kinds += [
            lambda: (json_bytes(with_(ts=1000)), "bad_timestamp"),  # 1970
            lambda: (json_bytes(with_(ts=4102444800000)), "bad_timestamp"),  # 2100
        ]
    if topic in ("interactions", "feedback"):
        kinds.append(lambda: (json_bytes(with_(item_id="no-such-item")), "unknown_item"))
    out: list[Garbage] = []
    # One 10 MB value per topic, then the cheap kinds round-robin.
    out.append((topic, key, b'{"pad": "' + b"x" * BIG + b'"}', "too_large"))
    for i in range(n - 1):
        raw, reason = kinds[i % len(kinds)]()
        out.append((topic, key, raw, reason))
    return out


def test_five_percent_garbage_everywhere(broker: EmbeddedBroker, tmp_path: Path) -> None:
    rng = random.Random(7)
    settings = settings_for(broker.url, tmp_path / "state", partitions=2)
    producer = Producer(settings)
    # kafka-python refuses records over 1 MB by default; the garbage has 10 MB ones.
    producer.producer.config["max_request_size"] = 16 * 1024 * 1024
    producer.producer._max_request_size = 16 * 1024 * 1024  # type: ignore[attr-defined]
    dead = Recorder(settings, f"{settings.topic_prefix}dead-letter")
    recs = Recorder(settings, f"{settings.topic_prefix}recommendations")
    items = catalog(100)
    users = [{"user_id": f"u{i}", "attributes": {"age": 20 + i}} for i in range(20)]
    ts = now_ms()
    clicks = [
        {
            "event_id": f"e{i}",
            "user_id": f"u{i % 20}",
            "item_id": f"i{rng.randrange(100)}",
            "type": "click",
            "ts": ts,
        }
        for i in range(400)
    ]
    fbs = [
        {
            "event_id": f"f{i}",
            "user_id": c["user_id"],
            "item_id": c["item_id"],
            "label": i % 2,
            "ts": ts,
        }
        for i, c in enumerate(clicks[200:300])
    ]
    reqs = [{"request_id": f"r{i}", "user_id": f"u{i % 20}", "ts": ts, "k": 5} for i in range(100)]

    garbage: list[Garbage] = []
    garbage += garbage_for("items", items[0], "item_id", 5, rng)
    garbage += garbage_for("users", users[0], "user_id", 2, rng)
    garbage += garbage_for("interactions", clicks[0], "event_id", 20, rng)
    garbage += garbage_for("feedback", fbs[0], "event_id", 5, rng)
    garbage += garbage_for("recommendation-requests", reqs[0], "request_id", 5, rng)
    # Duplicate event ids: a producer sends the same interaction/feedback twice.
    dup_click, dup_fb = clicks[50], fbs[10]

    worker = None
    try:
        # Catalog first (with its garbage), then the worker, then the event streams.
        for item in items:
            producer.send("items", item["item_id"], item)
        for user in users:
            producer.send("users", user["user_id"], user)
        for topic, key, raw, _ in garbage:
            if topic in ("items", "users"):
                producer.send(topic, key, raw)
        producer.flush()
        worker = start_worker(settings, tmp_path / "worker.log")
        worker.wait_ready()
        pid = worker.proc.pid if worker.proc else None

        stream_garbage = [g for g in garbage if g[0] not in ("items", "users")]
        rng.shuffle(stream_garbage)
        queue: list[tuple[str, str | None, bytes]] = []
        queue += [("interactions", c["user_id"], json_bytes(c)) for c in clicks]
        queue += [("interactions", dup_click["user_id"], json_bytes(dup_click))]
        for g in stream_garbage:
            queue.insert(rng.randrange(50, len(queue)), g[:3])
        for topic, key, raw in queue:
            producer.send(topic, key, raw)
        producer.flush()
        wanted = {c["event_id"] for c in clicks}
        recs.wait_for(lambda rs: wanted <= {r["source_event_id"] for r in rs}, timeout=180)
        # Feedback and requests after the clicks they refer to.
        for f in fbs:
            producer.send("feedback", f["user_id"], f)
        producer.send("feedback", dup_fb["user_id"], dup_fb)
        for r in reqs:
            producer.send("recommendation-requests", r["user_id"], r)
        producer.flush()
        wanted_reqs = {r["request_id"] for r in reqs}
        recs.wait_for(lambda rs: wanted_reqs <= {r["source_event_id"] for r in rs}, timeout=120)

        expected = [(t, raw, reason) for t, _, raw, reason in garbage]
        expected.append(("interactions", json_bytes(dup_click), "duplicate_event"))
        expected.append(("feedback", json_bytes(dup_fb), "duplicate_event"))
        records = dead.wait_for(lambda rs: len(rs) >= len(expected), timeout=120)
        learned = worker.metric("promptrec_feedback_learned_total")
        index_items = worker.metric("promptrec_index_items")
        assert worker.alive and worker.proc and worker.proc.pid == pid, "the worker restarted"
    finally:
        if worker is not None:
            worker.stop()
        producer.close()
        recs.close()

    assert len(records) == len(expected), (len(records), len(expected))
    by_value: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        by_value.setdefault((r["original_topic"], r["value_sha256"]), []).append(r)
    for topic, raw, reason in expected:
        full = f"{settings.topic_prefix}{topic}"
        found = by_value.get((full, hashlib.sha256(raw).hexdigest()))
        assert found, f"{topic}: {reason} record {raw[:50]!r} not dead-lettered"
        assert any(r["reason"] == reason for r in found), (reason, [r["reason"] for r in found])
        r = found[0]
        assert r["value_size"] == len(raw)
        carried = dead_letter_bytes(r)
        assert raw.startswith(carried) and (r["truncated"] or carried == raw)
        assert r["detail"]
    # Every valid record had its effect.
    assert index_items == len(items)
    assert learned == len(fbs)
    dead.close()
