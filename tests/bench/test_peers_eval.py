"""bench/peers/our_eval.py: the split the peers train on, and our evaluator's pipe and report."""

from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from promptrec.evaluation.datasets import Dataset, Interaction, ItemRecord
from promptrec.evaluation.protocol import MatrixScorer, Split, evaluate, stage_ranks

ROOT = Path(__file__).resolve().parents[2]


def _our_eval() -> ModuleType:
    # bench/peers is not a package (its other driver runs in another venv): load by path.
    spec = importlib.util.spec_from_file_location("our_eval", ROOT / "bench/peers/our_eval.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


our_eval = _our_eval()


def tiny_split() -> Split:
    """3 users; b's first two events share a timestamp (file order must win)."""
    items = [ItemRecord(f"i{n}", f"Item {n}") for n in range(6)]
    seqs = {"a": ["i0", "i1", "i2", "i3", "i4"], "b": ["i5", "i0", "i1", "i2"], "c": ["i3", "i4"]}
    events = []
    for user, seq in seqs.items():
        events += [Interaction(user, item, 1000 * max(t, 1)) for t, item in enumerate(seq)]
    events.sort(key=lambda e: e.ts)  # stable: equal timestamps keep their order
    return Split.from_dataset(Dataset("tiny", "jsonl", items, {}, events))


def test_export_writes_only_our_training_items_in_our_order(tmp_path: Path) -> None:
    split = tiny_split()
    counts = our_eval.export(split, tmp_path)
    assert counts == {"users": 3, "items": 6, "train_interactions": 7, "evaluated_users": 2}
    rows = (tmp_path / "atomic/peers/peers.inter").read_text().splitlines()
    assert rows[0] == "user_id:token\titem_id:token\ttimestamp:float"
    got: dict[int, list[tuple[int, int]]] = {}
    for row in rows[1:]:
        user, item, pos = row.split("\t")
        got.setdefault(int(user), []).append((int(pos), int(item)))
    # Validation and test targets are not in the file; positions make the order explicit.
    assert {u: [i for _, i in sorted(v)] for u, v in got.items()} == dict(enumerate(split.train))
    assert split.train[1] == [5, 0]  # b: the tied pair kept file order
    items = (tmp_path / "atomic/peers/peers.item").read_text().splitlines()
    assert items == ["item_id:token", *map(str, range(6))]  # targets-only items get an id too
    doc = json.loads((tmp_path / "split.json").read_text())
    assert doc["valid"] == split.valid.tolist() and doc["test"] == split.test.tolist()


def test_serve_ranks_with_our_evaluator_and_survives_bad_requests(tmp_path: Path) -> None:
    split = tiny_split()
    rng = np.random.default_rng(0)
    good = rng.normal(size=(3, 6)).astype(np.float32)
    np.save(tmp_path / "good.npy", good)
    np.save(tmp_path / "short.npy", good[:, :5])
    nan = good.copy()
    nan[0, 0] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    requests = [
        {"scores": str(tmp_path / "good.npy"), "stage": "test", "ranks_out": str(tmp_path / "r")},
        "not json at all",
        ["a", "list"],
        {"scores": str(tmp_path / "good.npy"), "stage": "train"},
        {"scores": str(tmp_path / "short.npy"), "stage": "valid"},
        {"scores": str(tmp_path / "nan.npy"), "stage": "valid"},
        {"scores": str(tmp_path / "missing.npy"), "stage": "valid"},
        {"scores": str(tmp_path / "good.npy"), "stage": "valid"},
    ]
    lines = [r if isinstance(r, str) else json.dumps(r) for r in requests]
    out = io.StringIO()
    our_eval.serve(split, io.StringIO("\n".join(lines) + "\n\n"), out)
    replies = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(replies) == len(requests)
    scorer = MatrixScorer(good, 3, 6)
    assert replies[0]["metrics"] == evaluate(scorer, split, "test")
    assert replies[0]["n_users"] == 2
    saved = np.load(tmp_path / "r.npy")
    assert saved.tolist() == stage_ranks(scorer, split, "test").tolist()
    errors = [r.get("error", "") for r in replies[1:-1]]
    assert "JSONDecodeError" in errors[0]
    assert "JSON object" in errors[1]
    assert "stage must be" in errors[2]
    assert "want (3, 6)" in errors[3]
    assert "NaN" in errors[4]
    assert "missing.npy" in errors[5]
    assert replies[-1]["metrics"] == evaluate(scorer, split, "valid")  # still serving


def test_report_pairs_promptrec_with_each_peer_on_the_same_users(tmp_path: Path) -> None:
    split = tiny_split()
    point = tmp_path / "runs/SASRec/p1"
    point.mkdir(parents=True)
    np.save(point / "test.ranks.npy", np.array([4, 0]))
    np.save(point / "valid.ranks.npy", np.array([1, 2]))
    summary = {"model": "SASRec", "chosen": {"dir": "SASRec/p1", "point": 1}, "grid": []}
    (tmp_path / "runs/SASRec.json").write_text(json.dumps(summary))
    ours = {"valid": np.array([0, 0]), "test": np.array([0, 1])}
    doc = our_eval.report(split, [tmp_path / "runs/SASRec.json"], ours, {"dataset": "tiny"})
    assert list(doc["methods"]) == ["promptrec", "recbole-sasrec", "pop"]
    assert doc["methods"]["recbole-sasrec"]["HR@5"] == pytest.approx(1.0)
    assert doc["methods"]["recbole-sasrec"]["NDCG@5"] == pytest.approx((1 / np.log2(6) + 1) / 2)
    paired = doc["paired"]["vs"]["recbole-sasrec"]
    assert paired["n_users"] == 2
    expected = ((1 - 1 / np.log2(6)) + (1 / np.log2(3) - 1)) / 2
    assert paired["mean_diff"] == pytest.approx(expected, abs=1e-5)
    assert set(doc["intervals"]) == {"promptrec", "recbole-sasrec", "pop"}
    assert doc["valid"]["recbole-sasrec"]["HR@5"] == 1.0
    assert doc["peers"]["recbole-sasrec"]["chosen"]["point"] == 1


def test_report_without_promptrec_pairs_pop_with_the_peers(tmp_path: Path) -> None:
    split = tiny_split()
    point = tmp_path / "runs/GRU4Rec/p0"
    point.mkdir(parents=True)
    np.save(point / "test.ranks.npy", np.array([3, 0]))
    np.save(point / "valid.ranks.npy", np.array([0, 0]))
    summary = {"model": "GRU4Rec", "chosen": {"dir": "GRU4Rec/p0", "point": 0}, "grid": []}
    (tmp_path / "runs/GRU4Rec.json").write_text(json.dumps(summary))
    doc = our_eval.report(split, [tmp_path / "runs/GRU4Rec.json"], None, {"dataset": "tiny"})
    assert list(doc["methods"]) == ["recbole-gru4rec", "pop"]
    assert doc["paired"]["method"] == "pop"
    assert doc["methods"]["pop"]["NDCG@10"] == 1.0  # both tiny targets win their count ties
    # Oriented baseline minus other: Pop (1, 1) - peer (1 / log2(5), 1).
    expected = (1.0 - 1.0 / np.log2(5)) / 2
    assert doc["paired"]["vs"]["recbole-gru4rec"]["mean_diff"] == pytest.approx(expected, abs=1e-5)
