"""Catalog encoding off the engine thread: prepare (encode) vs commit (index), and the thread.

Real FAISS and a real (tiny, randomly initialised) transformer, as in test_domain.py.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from promptrec.encoder import TextEncoder
from promptrec.encoder.settings import EncoderSettings
from promptrec.index import IndexSettings
from promptrec.serving.catalog import CatalogRecord, CatalogUpdater
from promptrec.serving.engine import Engine
from promptrec.serving.recommender import Query, Recommender
from promptrec.streams.settings import StreamSettings

LIMITS = StreamSettings().limits()
WAIT_S = 60.0  # generous: only a deadlock (a shared thread) would reach it


def load_engine(tmp_path: Path, encoder: TextEncoder, **settings: object) -> Engine:
    stream = StreamSettings(state_dir=tmp_path, candidates=20, **settings)  # type: ignore[arg-type]
    return Engine.load(stream, EncoderSettings(), IndexSettings(), encoder=encoder)


@pytest.fixture
def engine(tmp_path: Path, tiny_encoder: TextEncoder) -> Engine:
    return load_engine(tmp_path, tiny_encoder)


def item(item_id: str, title: str, offset: int = 0) -> CatalogRecord:
    value = json.dumps({"item_id": item_id, "title": title, "attributes": {"c": "x"}}).encode()
    return CatalogRecord("items", 0, offset, item_id.encode(), value)


def user(user_id: str) -> CatalogRecord:
    value = json.dumps({"user_id": user_id, "attributes": {"age_band": "25-34"}}).encode()
    return CatalogRecord("users", 0, 0, user_id.encode(), value)


def test_prepare_only_reads_and_commit_applies_idempotently(engine: Engine) -> None:
    updater = CatalogUpdater(engine, LIMITS)
    plan = updater.prepare([item("a", "alpha"), item("b", "beta"), user("u1")])
    assert len(engine.index) == 0 and len(engine.profiles) == 0  # nothing written yet
    assert plan.item_ids == ["a", "b"] and plan.user_ids == ["u1"]
    assert plan.item_vectors is not None and plan.item_vectors.shape == (2, engine.encoder.dim)
    assert plan.user_vectors is not None and plan.user_vectors.shape == (1, engine.encoder.dim)
    out = updater.commit(plan)
    assert (out.upserted, out.profiles, len(engine.index)) == (2, 1, 2)
    vector = engine.index.get_many(["a"])[0].copy()
    again = updater.commit(plan)  # a retried commit changes nothing
    assert len(engine.index) == 2 and np.array_equal(engine.index.get_many(["a"])[0], vector)
    assert again.upserted == 2
    unchanged = updater.prepare([item("a", "alpha")])
    assert unchanged.item_ids == [] and unchanged.unchanged == 1


def test_prepare_dead_letters_garbage_and_commit_keeps_the_rest(engine: Engine) -> None:
    updater = CatalogUpdater(engine, LIMITS)
    records = [
        CatalogRecord("items", 0, 1, b"x", b"\xff\xfe not json"),
        CatalogRecord("users", 0, 2, b"u", b"[1, 2]"),
        CatalogRecord("items", 0, 3, None, None),  # tombstone without a key
        item("ok", "fine item"),
    ]
    plan = updater.prepare(records)
    out = updater.commit(plan)
    assert sorted(str(err.reason) for _, err in out.dead) == sorted(
        str(err.reason) for _, err in plan.dead
    )
    assert len(out.dead) == 3 and [r.offset for r, _ in out.dead] == [1, 2, 3]
    assert engine.index.ids() == ["ok"]


def test_deletes_are_applied_at_commit(engine: Engine) -> None:
    updater = CatalogUpdater(engine, LIMITS)
    updater.apply_many([item("a", "alpha"), item("b", "beta")])
    plan = updater.prepare([CatalogRecord("items", 0, 5, b"a", None)])
    assert "a" in engine.index and plan.drop_items == ["a"]
    assert updater.commit(plan).removed == 1 and engine.index.ids() == ["b"]


def test_catalog_thread_is_its_own_and_runs_lower(engine: Engine) -> None:
    names = engine.encode_executor.submit(lambda: threading.current_thread().name)
    engine_name = engine.executor.submit(lambda: threading.current_thread().name)
    assert names.result().startswith("catalog") and engine_name.result().startswith("engine")
    if sys.platform != "linux":
        pytest.skip("per-thread niceness is Linux behaviour")

    def nice() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    base = engine.executor.submit(nice).result()
    assert engine.encode_executor.submit(nice).result() == min(19, base + 10)
    assert engine.replay_executor.submit(nice).result() == base  # the start-up replay: normal
    replay = engine.replay_executor.submit(lambda: threading.get_native_id()).result()
    assert replay != engine.encode_executor.submit(lambda: threading.get_native_id()).result()


def test_catalog_nice_zero_keeps_the_priority(tmp_path: Path, tiny_encoder: TextEncoder) -> None:
    if sys.platform != "linux":
        pytest.skip("per-thread niceness is Linux behaviour")
    engine = load_engine(tmp_path, tiny_encoder, catalog_nice=0)

    def nice() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    assert engine.encode_executor.submit(nice).result() == engine.executor.submit(nice).result()
    engine.close()


def test_recommendations_run_while_the_catalog_thread_encodes(engine: Engine) -> None:
    updater = CatalogUpdater(engine, LIMITS)
    updater.apply_many([item(f"i{n}", f"item number {n} about topic {n % 3}") for n in range(12)])
    rec = Recommender(engine)
    busy, release = threading.Event(), threading.Event()

    def long_encode() -> object:
        busy.set()
        release.wait(WAIT_S)  # the catalog thread is held: a burst that has not finished
        return updater.prepare([item(f"new{n}", f"new item {n}") for n in range(40)])

    encoding = engine.encode_executor.submit(long_encode)
    assert busy.wait(WAIT_S)
    answer = engine.executor.submit(rec.recommend_many, [Query("u1", ["i0"], frozenset(), 5)])
    batch = answer.result(timeout=WAIT_S)  # answered although the encode has not finished
    assert not encoding.done() and batch.strategies == ["model"] and len(batch.items[0]) == 5
    release.set()
    plan = encoding.result(timeout=WAIT_S)
    assert "new0" not in engine.index  # vectors are ready, the index is not touched yet
    engine.executor.submit(updater.commit, plan).result(timeout=WAIT_S)
    assert len(engine.index) == 52
