"""ScoringHead: the contract every online model must meet, cosine start, learning, persistence."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from promptrec.encoder import CheckpointError, EncoderSettings, ScoringHead

DIM = 16


def _units(rng: np.random.Generator, *shape: int) -> np.ndarray:
    x = rng.normal(size=(*shape, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


def _weights(head: ScoringHead) -> dict[str, torch.Tensor]:
    return head.to_tensors()


def _same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_fresh_head_ranks_by_cosine(rng: np.random.Generator) -> None:
    head = ScoringHead(DIM, hidden=8)
    users, items = _units(rng, 4), _units(rng, 4, 30)
    scores = head.score_many(users, items)
    cosines = np.einsum("bd,bnd->bn", users, items)
    assert scores.shape == (4, 30)
    assert scores.dtype == np.float32
    np.testing.assert_allclose(scores, 10.0 * cosines, atol=1e-5)
    for row in range(4):
        assert np.argsort(-scores[row]).tolist() == np.argsort(-cosines[row]).tolist()


def test_batched_scoring_is_the_pairwise_forward(rng: np.random.Generator) -> None:
    # score_many reassociates the interaction layer (one matmul per user); it must stay the
    # function predict_proba_many computes pair by pair, on a head that has learned.
    head = ScoringHead(DIM, hidden=8)
    for _ in range(5):
        head.learn_many(_units(rng, 16), _units(rng, 16), rng.integers(0, 2, 16).astype(np.float32))
    users, items = _units(rng, 3), _units(rng, 3, 7)
    logits = head.score_many(users, items)
    pairs = head.predict_proba_many(np.repeat(users, 7, axis=0), items.reshape(21, DIM))
    np.testing.assert_allclose(1.0 / (1.0 + np.exp(-logits.reshape(21))), pairs, atol=1e-6)
    np.testing.assert_array_equal(head.score_many(users, items, check=False), logits)


def test_score_rows_is_score_many_of_the_gathered_rows(
    rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The recommender's path: candidates gathered from a table into reused scratch buffers.
    head = ScoringHead(DIM, hidden=8)
    for _ in range(5):
        head.learn_many(_units(rng, 16), _units(rng, 16), rng.integers(0, 2, 16).astype(np.float32))
    table = _units(rng, 50)
    # Largest call first, then a smaller and a larger one: stale buffer contents must not leak.
    for b, n in [(4, 9), (2, 3), (6, 12)]:
        users, rows = _units(rng, b), rng.integers(0, 50, (b, n))
        got = head.score_rows(users, table, rows)
        assert got.shape == (b, n) and got.dtype == np.float32
        np.testing.assert_allclose(got, head.score_many(users, table[rows]), rtol=1e-5, atol=1e-5)
    # Calls too large to keep their buffers give the same answers.
    monkeypatch.setattr("promptrec.encoder.head._KEEP_WORKSPACE_BYTES", 0)
    users, rows = _units(rng, 3), rng.integers(0, 50, (3, 5))
    np.testing.assert_allclose(
        head.score_rows(users, table, rows), head.score_many(users, table[rows]), atol=1e-5
    )
    assert head.score_rows(_units(rng, 2), table, np.zeros((2, 0), np.int64)).shape == (2, 0)


def test_score_rows_rejects_bad_shapes_and_rows(rng: np.random.Generator) -> None:
    head = ScoringHead(DIM, hidden=8)
    table, users = _units(rng, 10), _units(rng, 2)
    for bad_rows in (np.array([[0, 10]]).repeat(2, 0), np.array([[-1, 0]]).repeat(2, 0)):
        with pytest.raises(ValueError, match="rows must lie"):
            head.score_rows(users, table, bad_rows)
    with pytest.raises(ValueError, match="score_rows needs"):
        head.score_rows(users, table, np.zeros((3, 2), np.int64))  # 3 row lists, 2 users
    with pytest.raises(ValueError, match="score_rows needs"):
        head.score_rows(users, table[:, :4], np.zeros((2, 2), np.int64))
    with pytest.raises(ValueError, match="score_rows needs"):
        head.score_rows(users, table, np.zeros(2, np.int64))


def test_predict_proba_is_sigmoid_of_score(rng: np.random.Generator) -> None:
    head = ScoringHead(DIM)
    head.learn_many(_units(rng, 8), _units(rng, 8), rng.integers(0, 2, 8).astype(np.float32))
    users, items = _units(rng, 5), _units(rng, 5)
    proba = head.predict_proba_many(users, items)
    logits = head.score_many(users, items[:, None, :])[:, 0]
    assert proba.shape == (5,)
    assert proba.dtype == np.float32
    np.testing.assert_allclose(proba, 1.0 / (1.0 + np.exp(-logits)), atol=1e-6)


def test_learning_moves_scores_apart(rng: np.random.Generator) -> None:
    head = ScoringHead(DIM, hidden=16, learning_rate=1e-2)
    user, good, bad = _units(rng, 3)
    before = head.score_many(user[None], np.stack([good, bad])[None])[0]
    users = np.stack([user, user])
    items = np.stack([good, bad])
    labels = np.array([1.0, 0.0], dtype=np.float32)
    losses = [head.learn_many(users, items, labels) for _ in range(30)]
    after = head.score_many(user[None], np.stack([good, bad])[None])[0]
    assert after[0] > before[0]
    assert after[1] < before[1]
    assert losses[-1] < losses[0]
    assert head.version == 30


def test_version_increments_and_loss_is_finite(rng: np.random.Generator) -> None:
    head = ScoringHead(DIM)
    assert head.version == 0
    loss = head.learn_one(_units(rng, 1)[0], _units(rng, 1)[0], 1.0)
    assert np.isfinite(loss) and loss > 0
    assert head.version == 1
    head.learn_many(_units(rng, 3), _units(rng, 3), np.array([0, 1, 0.5], dtype=np.float32))
    assert head.version == 2


def test_learn_returns_loss_before_step(rng: np.random.Generator) -> None:
    head = ScoringHead(DIM)
    u, v = _units(rng, 1), _units(rng, 1)
    p = float(head.predict_proba_many(u, v)[0])
    loss = head.learn_many(u, v, np.array([1.0], dtype=np.float32))
    assert loss == pytest.approx(-np.log(p), rel=1e-5)


@pytest.mark.parametrize(
    "case",
    [
        "nan_user",
        "inf_item",
        "nan_label",
        "label_range",
        "wrong_dim",
        "row_mismatch",
        "empty",
        "3d",
    ],
)
def test_learn_many_rejects_bad_input_without_change(rng: np.random.Generator, case: str) -> None:
    head = ScoringHead(DIM)
    head.learn_many(_units(rng, 2), _units(rng, 2), np.array([1, 0], dtype=np.float32))
    users, items = _units(rng, 3), _units(rng, 3)
    labels = np.array([1, 0, 1], dtype=np.float32)
    if case == "nan_user":
        users[1, 2] = np.nan
    elif case == "inf_item":
        items[0, 0] = np.inf
    elif case == "nan_label":
        labels[2] = np.nan
    elif case == "label_range":
        labels[0] = 2.0
    elif case == "wrong_dim":
        users = users[:, :-1]
    elif case == "row_mismatch":
        labels = labels[:2]
    elif case == "empty":
        users, items, labels = users[:0], items[:0], labels[:0]
    elif case == "3d":
        items = items[:, None, :]
    weights, version = _weights(head), head.version
    with pytest.raises(ValueError):
        head.learn_many(users, items, labels)
    assert _same_weights(weights, _weights(head))
    assert head.version == version
    # The optimizer is still usable afterwards.
    head.learn_many(_units(rng, 2), _units(rng, 2), np.array([1, 0], dtype=np.float32))
    assert head.version == version + 1


def test_learn_one_rejects_bad_input_without_change(rng: np.random.Generator) -> None:
    head = ScoringHead(DIM)
    weights = _weights(head)
    user, item = _units(rng, 2)
    with pytest.raises(ValueError):
        head.learn_one(user[:-1], item, 1.0)
    with pytest.raises(ValueError):
        head.learn_one(user, item, float("nan"))
    with pytest.raises(ValueError):
        head.learn_one(np.full(DIM, np.nan, np.float32), item, 1.0)
    with pytest.raises(ValueError):
        head.learn_one(user[None], item[None], 1.0)
    assert _same_weights(weights, _weights(head))
    assert head.version == 0


def test_score_many_rejects_bad_shapes(rng: np.random.Generator) -> None:
    head = ScoringHead(DIM)
    with pytest.raises(ValueError):
        head.score_many(_units(rng, 2), _units(rng, 3, 4))
    with pytest.raises(ValueError):
        head.score_many(_units(rng, 2), _units(rng, 2))
    with pytest.raises(ValueError):
        head.predict_proba_many(_units(rng, 2), _units(rng, 3))
    items = _units(rng, 2, 4)
    items[1, 1, 1] = np.nan
    with pytest.raises(ValueError):
        head.score_many(_units(rng, 2), items)


def test_seed_makes_heads_reproducible(rng: np.random.Generator) -> None:
    assert _same_weights(_weights(ScoringHead(DIM, seed=3)), _weights(ScoringHead(DIM, seed=3)))
    assert not _same_weights(_weights(ScoringHead(DIM, seed=3)), _weights(ScoringHead(DIM)))


def test_from_settings() -> None:
    head = ScoringHead.from_settings(DIM, EncoderSettings(head_hidden=5, learning_rate=0.05))
    assert (head.dim, head.hidden, head.learning_rate) == (DIM, 5, 0.05)
    with pytest.raises(ValueError):
        ScoringHead(0)
    with pytest.raises(ValueError):
        ScoringHead(DIM, learning_rate=0.0)


def test_save_load_round_trip(tmp_path: Path, rng: np.random.Generator) -> None:
    head = ScoringHead(DIM, hidden=12, learning_rate=0.02, seed=5)
    for _ in range(7):
        head.learn_many(_units(rng, 4), _units(rng, 4), rng.integers(0, 2, 4).astype(np.float32))
    path = tmp_path / "heads" / "head.safetensors"
    head.save(path)
    loaded = ScoringHead.load(path)
    users, items = _units(rng, 3), _units(rng, 3, 9)
    np.testing.assert_array_equal(loaded.score_many(users, items), head.score_many(users, items))
    assert loaded.version == 7
    assert (loaded.dim, loaded.hidden, loaded.learning_rate) == (DIM, 12, 0.02)
    # The loaded head keeps learning.
    loaded.learn_one(users[0], items[0, 0], 1.0)
    assert loaded.version == 8


def test_load_rejects_pickle_and_garbage(tmp_path: Path) -> None:
    pickled = tmp_path / "head.pt"
    torch.save(ScoringHead(DIM).to_tensors(), pickled)
    with pytest.raises(CheckpointError, match=re.escape(str(pickled))):
        ScoringHead.load(pickled)
    plain_pickle = tmp_path / "head.pkl"
    plain_pickle.write_bytes(pickle.dumps({"w1": [1, 2, 3]}))
    with pytest.raises(CheckpointError, match=re.escape(str(plain_pickle))):
        ScoringHead.load(plain_pickle)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 3 + b"not a checkpoint" * 10)
    with pytest.raises(CheckpointError):
        ScoringHead.load(garbage)
    with pytest.raises(CheckpointError, match="does not exist"):
        ScoringHead.load(tmp_path / "missing.safetensors")


def test_load_rejects_foreign_or_mismatched_checkpoints(tmp_path: Path) -> None:
    from promptrec.encoder import save_checkpoint

    head = ScoringHead(DIM)
    other = tmp_path / "other.safetensors"
    save_checkpoint(other, head.to_tensors(), {"format": "something-else"})
    with pytest.raises(CheckpointError, match="format"):
        ScoringHead.load(other)
    meta: dict[str, str | int | float] = {
        "format": "promptrec-head-v1",
        "dim": DIM + 1,
        "hidden": 64,
        "learning_rate": 0.01,
    }
    wrong_shape = tmp_path / "wrong.safetensors"
    save_checkpoint(wrong_shape, head.to_tensors(), {**meta, "version": 0})
    with pytest.raises(CheckpointError, match="shape"):
        ScoringHead.load(wrong_shape)
    no_version = tmp_path / "noversion.safetensors"
    save_checkpoint(no_version, head.to_tensors(), {**meta, "dim": DIM})
    with pytest.raises(CheckpointError, match="metadata"):
        ScoringHead.load(no_version)
    tensors = head.to_tensors()
    del tensors["w2"]
    missing = tmp_path / "missing_tensor.safetensors"
    save_checkpoint(missing, tensors, {**meta, "dim": DIM, "version": 1})
    with pytest.raises(CheckpointError, match="w2"):
        ScoringHead.load(missing)


def test_load_tensors_validates_before_copying() -> None:
    head = ScoringHead(DIM)
    weights = _weights(head)
    bad = head.to_tensors()
    bad["b1"] = torch.full_like(bad["b1"], float("nan"))
    bad["w1"] = bad["w1"] + 1.0
    with pytest.raises(CheckpointError, match="non-finite"):
        head.load_tensors(bad)
    assert _same_weights(weights, _weights(head))
    good = ScoringHead(DIM, seed=9).to_tensors()
    head.load_tensors(good)
    assert _same_weights(good, _weights(head))
