"""HeadSync: workers that exchange cumulative deltas converge to the same head.

The end-to-end tests at the bottom share one real worker (default MiniLM, real broker): garbage
on the model-updates topic is dead-lettered as ``bad_model_update`` while the worker serves on.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import save as safetensors_save

from promptrec.encoder import ScoringHead
from promptrec.encoder.settings import EncoderSettings
from promptrec.encoder.text_encoder import default_model_dir
from promptrec.events.exceptions import InvalidEvent, ReasonCode
from promptrec.serving.model_sync import HeadSync, HeadUpdate
from tests.pipeline_fixtures import Producer, Recorder, WorkerProcess, catalog_items, now_ms

DIM = 8


def batch(seed: int, n: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(n, DIM)).astype(np.float32)
    v = rng.normal(size=(n, DIM)).astype(np.float32)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    y = rng.integers(0, 2, size=n).astype(np.float32)
    return u, v, y


def worker(key: str) -> HeadSync:
    return HeadSync(ScoringHead(DIM, hidden=4), key)


def same(a: ScoringHead, b: ScoringHead) -> bool:
    ta, tb = a.to_tensors(), b.to_tensors()
    return all(torch.allclose(ta[n], tb[n], atol=1e-6) for n in ta)


def ship(update: HeadUpdate | None) -> HeadUpdate:
    assert update is not None
    return HeadUpdate.from_bytes(update.to_bytes())  # through the wire format


def test_update_round_trips_through_bytes() -> None:
    a = worker("a")
    a.learn_many(*batch(0))
    u = a.pending()
    assert u is not None and u.seq == 1
    back = HeadUpdate.from_bytes(u.to_bytes())
    assert (back.key, back.seq, back.dim, back.hidden) == ("a", 1, DIM, 4)
    assert all(torch.equal(back.delta[n], u.delta[n]) for n in u.delta)


def test_two_workers_learning_in_parallel_converge() -> None:
    a, b = worker("a"), worker("b")
    assert same(a.head, b.head)  # the common seeded base
    for step in range(3):
        a.learn_many(*batch(step))
        b.learn_many(*batch(100 + step))
    ua, ub = ship(a.pending()), ship(b.pending())
    a.published(ua.seq)
    b.published(ub.seq)
    assert b.apply(ua) and a.apply(ub)
    assert same(a.head, b.head)
    assert a.version == b.version == 6
    # More steps on one side: only the difference since the last applied update is added.
    a.learn_many(*batch(7))
    ua2 = ship(a.pending())
    a.published(ua2.seq)
    assert b.apply(ua2)
    assert same(a.head, b.head) and a.version == b.version == 7
    assert not b.apply(ua2), "an update that is not newer is ignored"
    assert not a.apply(ua2), "own updates are ignored"


def test_a_restarted_worker_rebuilds_the_head_from_the_updates() -> None:
    a, b = worker("a"), worker("b")
    a.learn_many(*batch(1))
    b.learn_many(*batch(2))
    ua, ub = ship(a.pending()), ship(b.pending())
    a.published(ua.seq)
    b.published(ub.seq)
    a.apply(ub)
    # A new incarnation of a: its disk-restored head is replaced by base + every update.
    restarted = HeadSync(ScoringHead(DIM, hidden=4), "a2")
    restarted.head.learn_many(*batch(99))  # stale local state, dropped by rebase
    restarted.rebase(ScoringHead(DIM, hidden=4))
    assert restarted.apply(ua) and restarted.apply(ub)
    assert same(restarted.head, a.head)
    assert restarted.version == a.version == 2


def test_version_counts_only_published_steps() -> None:
    a = worker("a")
    a.learn_many(*batch(0))
    a.learn_many(*batch(1))
    assert a.unpublished_steps == 2 and a.version == 0 and a.head.version == 0
    u = a.pending()
    assert u is not None
    a.published(u.seq)
    assert a.version == 2 and a.head.version == 2 and a.pending() is None


@pytest.mark.parametrize(
    "raw",
    [b"", b"not safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00{}"],
)
def test_garbage_is_a_bad_model_update(raw: bytes) -> None:
    with pytest.raises(InvalidEvent) as info:
        HeadUpdate.from_bytes(raw)
    assert info.value.reason in (ReasonCode.bad_model_update, ReasonCode.empty_value)


def test_update_of_another_shape_is_rejected() -> None:
    other = HeadSync(ScoringHead(DIM, hidden=6), "x")
    other.learn_many(*batch(0))
    with pytest.raises(InvalidEvent) as info:
        worker("a").apply(ship(other.pending()))
    assert info.value.reason == ReasonCode.bad_model_update


def test_non_finite_delta_is_rejected_and_the_head_is_unchanged() -> None:
    a, b = worker("a"), worker("b")
    a.learn_many(*batch(0))
    u = a.pending()
    assert u is not None
    bad = HeadUpdate(u.key, u.seq, u.dim, u.hidden, {**u.delta, "b": torch.tensor(float("nan"))})
    before = b.head.to_tensors()
    with pytest.raises(InvalidEvent):
        b.apply(ship(bad))
    assert all(torch.equal(before[n], b.head.to_tensors()[n]) for n in before)


# -- end to end: garbage on the model-updates topic --------------------------------------------


def _raw(record: dict[str, Any]) -> bytes:
    """The original value bytes a dead-letter record carries."""
    if record.get("value_text") is not None:
        return str(record["value_text"]).encode()
    return base64.b64decode(record.get("value_base64") or "")


def _worker_head() -> ScoringHead:
    """A head shaped like the e2e worker's: default MiniLM width, default hidden units."""
    config = json.loads((default_model_dir() / "config.json").read_text())
    return ScoringHead.from_settings(int(config["hidden_size"]), EncoderSettings())


def _update(head: ScoringHead, key: str, **delta: torch.Tensor) -> bytes:
    """Update bytes from peer ``key``: a zero delta of ``head``'s tensors, ``delta`` replacing."""
    zeros = {name: torch.zeros_like(t) for name, t in head.to_tensors().items()}
    tensors = {**zeros, **delta} if delta else zeros
    return HeadUpdate(key, 1, head.dim, head.hidden, tensors).to_bytes()


def _bare_safetensors(meta: dict[str, str] | None) -> bytes:
    return bytes(safetensors_save({"w": torch.zeros(2)}, metadata=meta))


@pytest.fixture(scope="module")
def serving(worker: WorkerProcess) -> Iterator[tuple[WorkerProcess, Producer, Recorder, Recorder]]:
    """The module's worker, started on a small catalog, with a producer and two recorders."""
    producer = Producer(worker.settings)
    for item in catalog_items():
        producer.send("items", item["item_id"], item)
    producer.flush()
    worker.start().wait_ready()
    prefix = worker.settings.topic_prefix
    dead = Recorder(worker.settings, f"{prefix}dead-letter")
    recs = Recorder(worker.settings, f"{prefix}recommendations")
    yield worker, producer, dead, recs
    producer.close()
    dead.close()
    recs.close()


def _click(user: str, item: str) -> dict[str, Any]:
    return {
        "event_id": uuid.uuid4().hex,
        "user_id": user,
        "item_id": item,
        "type": "click",
        "ts": now_ms(),
    }


def _expect_dead_letters(
    serving: tuple[WorkerProcess, Producer, Recorder, Recorder], garbage: list[bytes], user: str
) -> None:
    """Send ``garbage`` to model-updates, then a valid peer update and a click; check all three.

    Every garbage value must come back on the dead-letter topic with reason
    ``bad_model_update`` and its original bytes, the valid update behind it must still be
    applied, and the click must still get its recommendation from the same worker process.
    """
    worker, producer, dead, recs = serving
    assert worker.proc is not None
    pid = worker.proc.pid
    applied = worker.metric("promptrec_model_updates_applied_total")
    seen = len(dead.records)
    # One record key: one partition, read in order, so once the valid update (sent last) is
    # applied every garbage record before it has been handled.
    for raw in garbage:
        producer.send("model-updates", f"junk-{user}", raw)
    producer.send("model-updates", f"junk-{user}", _update(_worker_head(), f"peer-{user}"))
    click = _click(user, "jazz-1")
    producer.send("interactions", user, click)
    producer.flush()

    deadline = time.monotonic() + 60
    while worker.metric("promptrec_model_updates_applied_total") < applied + 1:
        assert time.monotonic() < deadline, "the valid update after the garbage was not applied"
        time.sleep(0.2)
    recs.wait_for(lambda rs: any(r["source_event_id"] == click["event_id"] for r in rs))
    topic = f"{worker.settings.topic_prefix}model-updates"
    records = dead.wait_for(lambda rs: len(rs) >= seen + len(garbage), timeout=15)[seen:]
    by_value = {_raw(r): r for r in records}
    assert len(records) == len(garbage) and len(by_value) == len(garbage)
    for raw in garbage:
        record = by_value.get(raw)
        assert record is not None, f"{raw[:40]!r} not dead-lettered as it was sent"
        assert record["reason"] == "bad_model_update", record
        assert record["original_topic"] == topic and record["detail"]
        assert record["value_size"] == len(raw) and not record["truncated"]
    assert worker.alive and worker.proc.pid == pid, "the worker restarted"


@pytest.mark.integration
@pytest.mark.slow
def test_undecodable_model_updates_are_dead_lettered_and_the_worker_keeps_serving(
    serving: tuple[WorkerProcess, Producer, Recorder, Recorder],
) -> None:
    head = _worker_head()
    valid = _update(head, "peer-x")
    other = json.loads(valid[8 : 8 + int.from_bytes(valid[:8], "little")])["__metadata__"]
    garbage = [
        b"not safetensors at all",
        b"\x00" * 7,  # shorter than the safetensors length prefix
        valid[: len(valid) // 2],  # cut in the middle
        _bare_safetensors(None),  # safetensors without any metadata
        _bare_safetensors({**other, "format": "someone-elses-v9"}),
        _bare_safetensors({**other, "seq": "lots"}),
        HeadUpdate("peer-y", 0, head.dim, head.hidden, head.to_tensors()).to_bytes(),  # seq 0
    ]
    _expect_dead_letters(serving, garbage, "u-decode")


@pytest.mark.integration
@pytest.mark.slow
def test_model_updates_that_do_not_fit_the_head_are_dead_lettered(
    serving: tuple[WorkerProcess, Producer, Recorder, Recorder],
) -> None:
    head = _worker_head()
    garbage = [
        _update(ScoringHead(DIM, hidden=4), "peer-small"),  # another head shape
        HeadUpdate("peer-names", 1, head.dim, head.hidden, {"bogus": torch.zeros(3)}).to_bytes(),
        _update(head, "peer-w1", w1=torch.zeros(head.hidden, head.dim + 1)),  # wrong shape
        _update(head, "peer-nan", b1=torch.full((head.hidden,), float("nan"))),
        _update(head, "peer-inf", w2=torch.full((head.hidden,), float("inf"))),
    ]
    _expect_dead_letters(serving, garbage, "u-fit")
