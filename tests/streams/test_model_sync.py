"""HeadSync: workers that exchange cumulative deltas converge to the same head."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from promptrec.encoder import ScoringHead
from promptrec.streams.exceptions import InvalidEvent, ReasonCode
from promptrec.streams.history import UserHistory
from promptrec.streams.model_sync import HeadSync, HeadUpdate

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


def test_history_tells_redelivery_from_duplicate() -> None:
    h = UserHistory()
    assert h.position_of("e1") is None
    assert h.append("e1", "i1", 1, max_len=5, position="0:10")
    assert h.position_of("e1") == "0:10"  # same id at the same position: a redelivery
    assert not h.append("e1", "i1", 1, max_len=5, position="0:11")
    for n in range(2, 20):
        h.append(f"e{n}", "i", n, max_len=5, position=f"0:{n + 10}")
    assert len(h.event_ids) == len(h.positions) == 10
    assert h.position_of("e19") == "0:29" and h.position_of("e1") is None
    back = UserHistory.from_value(h.to_value())
    assert back == h


def test_history_remembers_learned_feedback() -> None:
    h = UserHistory()
    assert h.feedback_position("f1") is None
    h.add_feedback("f1", "1:5", max_len=2)
    assert h.feedback_position("f1") == "1:5"
    for n in range(2, 10):
        h.add_feedback(f"f{n}", f"1:{n}", max_len=2)
    assert len(h.feedback) == 4 and h.feedback_position("f1") is None
