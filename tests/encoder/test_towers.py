"""UserTower: known answers for history decay, profile mixing and the no-signal case."""

from __future__ import annotations

import numpy as np
import pytest

from promptrec.encoder import UserTower

DIM = 4


def _unit(*values: float) -> np.ndarray:
    v = np.array(values, dtype=np.float32)
    return v / np.linalg.norm(v)


E0, E1, E2 = _unit(1, 0, 0, 0), _unit(0, 1, 0, 0), _unit(0, 0, 1, 0)


def _empty() -> np.ndarray:
    return np.zeros((0, DIM), dtype=np.float32)


def test_single_history_item_is_that_vector() -> None:
    users, signal = UserTower().build_many([np.stack([_unit(1, 2, 3, 4)])], [None])
    np.testing.assert_allclose(users[0], _unit(1, 2, 3, 4), atol=1e-6)
    assert signal.tolist() == [True]
    assert users.dtype == np.float32


def test_decay_weights_newest_most() -> None:
    tower = UserTower(recency_decay=0.5, profile_weight=0.3)
    users, _ = tower.build_many([np.stack([E0, E1])], [None])  # E0 older, E1 newer
    np.testing.assert_allclose(users[0], _unit(0.5, 1, 0, 0), atol=1e-6)
    assert users[0] @ E1 > users[0] @ E0
    reordered, _ = tower.build_many([np.stack([E1, E0])], [None])
    assert reordered[0] @ E0 > reordered[0] @ E1


def test_decay_one_is_plain_mean() -> None:
    users, _ = UserTower(recency_decay=1.0).build_many([np.stack([E0, E1, E2])], [None])
    np.testing.assert_allclose(users[0], _unit(1, 1, 1, 0), atol=1e-6)


def test_profile_only_is_the_profile() -> None:
    profile = _unit(0, 0, 3, 4)
    users, signal = UserTower(profile_weight=0.0).build_many([_empty()], [profile])
    np.testing.assert_allclose(users[0], profile, atol=1e-6)
    assert signal.tolist() == [True]


def test_history_and_profile_mix() -> None:
    tower = UserTower(recency_decay=0.85, profile_weight=0.25)
    users, signal = tower.build_many([np.stack([E0])], [E1 * 2.0])  # profile renormalised
    np.testing.assert_allclose(users[0], _unit(0.75, 0.25, 0, 0), atol=1e-6)
    assert signal.tolist() == [True]


def test_neither_part_has_no_signal() -> None:
    users, signal = UserTower().build_many([_empty(), np.stack([E2])], [None, None])
    assert signal.tolist() == [False, True]
    np.testing.assert_array_equal(users[0], np.zeros(DIM, dtype=np.float32))
    np.testing.assert_allclose(users[1], E2, atol=1e-6)


def test_batch_matches_one_by_one() -> None:
    rng = np.random.default_rng(0)
    tower = UserTower()
    histories = [rng.normal(size=(n, 16)).astype(np.float32) for n in (0, 1, 5, 50, 3)]
    profiles = [None, rng.normal(size=16).astype(np.float32), None, None, np.ones(16, np.float32)]
    batch, signal = tower.build_many(histories, profiles)
    assert batch.shape == (5, 16)
    assert signal.tolist() == [False, True, True, True, True]
    for i, (h, p) in enumerate(zip(histories, profiles, strict=True)):
        single, _ = tower.build_many([h], [p])
        np.testing.assert_allclose(batch[i], single[0], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(batch[1:], axis=1), 1.0, atol=1e-5)


def test_empty_batch() -> None:
    users, signal = UserTower().build_many([], [])
    assert users.shape[0] == 0
    assert signal.shape == (0,)


@pytest.mark.parametrize(
    ("histories", "profiles"),
    [
        ([np.stack([E0])], []),  # length mismatch
        ([E0], [None]),  # 1-D history
        ([np.stack([E0])], [np.zeros(3, np.float32)]),  # width mismatch
        ([np.stack([E0]) * np.nan], [None]),  # non-finite
        ([_empty()], [np.stack([E0])]),  # 2-D profile
    ],
)
def test_bad_inputs_raise(histories: list[np.ndarray], profiles: list[np.ndarray | None]) -> None:
    with pytest.raises(ValueError):
        UserTower().build_many(histories, profiles)


def test_bad_parameters_raise() -> None:
    with pytest.raises(ValueError):
        UserTower(recency_decay=0.0)
    with pytest.raises(ValueError):
        UserTower(profile_weight=1.5)
