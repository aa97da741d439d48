"""The worker with a fine-tuned checkpoint: new catalog items go through the tuned encoder.

Real engine, catalog updater, FAISS index and safetensors checkpoint; a tiny random BERT.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from promptrec.encoder import TextEncoder
from promptrec.encoder.exceptions import CheckpointError
from promptrec.encoder.features import render_fields
from promptrec.encoder.model import TEXT_ENCODER_PREFIX, save_model
from promptrec.encoder.prompts import PromptTemplates
from promptrec.encoder.settings import EncoderSettings
from promptrec.index import IndexSettings
from promptrec.serving.arms import load_arm_engines
from promptrec.serving.catalog import CatalogRecord, CatalogUpdater
from promptrec.serving.engine import Engine, attach_encoder_process
from promptrec.serving.experiments import Experiments
from promptrec.serving.settings import ServingSettings
from promptrec.streams.settings import StreamSettings
from tests.encoder.test_finetune import rewrite, tune


@pytest.fixture(scope="module")
def tuned_checkpoint(tiny_encoder: TextEncoder, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tuned") / "model.safetensors"
    save_model(path, tune(tiny_encoder, "lora", epochs=1).model)
    return path


def tuned_vs_frozen(checkpoint: Path, tmp_path: Path) -> Experiments:
    """A two-arm experiment: the tuned checkpoint against the frozen encoder."""
    experiment = {
        "experiment": "tuned-vs-frozen",
        "arms": [
            {"name": "tuned", "weight": 50, "checkpoint": str(checkpoint)},
            {"name": "frozen", "weight": 50, "checkpoint": None},
        ],
    }
    path = tmp_path / "experiments.json"
    path.write_text(json.dumps(experiment), encoding="utf-8")
    return Experiments.load(path, PromptTemplates.load(None), "item", "user", None)


def item_record(item_id: str, title: str) -> CatalogRecord:
    value = json.dumps({"item_id": item_id, "title": title}).encode()
    return CatalogRecord("items", 0, 0, item_id.encode(), value)


def test_worker_encodes_new_items_with_the_tuned_encoder(
    tiny_encoder: TextEncoder, tuned_checkpoint: Path, tmp_path: Path
) -> None:
    stream = StreamSettings(state_dir=tmp_path / "state")
    settings = EncoderSettings(checkpoint=tuned_checkpoint)
    engine = Engine.load(stream, settings, IndexSettings(), encoder=tiny_encoder)
    assert engine.item_encoder is not None and engine.model is not None
    CatalogUpdater(engine, stream.limits()).apply_many(
        [item_record("brand-new", "Rock climbing gear")]
    )
    stored, found = engine.index.get_many(["brand-new"])
    assert found.all()
    fields = {"item_id": "brand-new", "title": "Rock climbing gear", "text": ""}
    text = render_fields(PromptTemplates.load(None), "item", fields, {}, 4000)  # as the worker
    tuned = engine.model.item_vectors(engine.item_encoder.encode_many([text]), ["brand-new"])
    frozen = engine.model.item_vectors(tiny_encoder.encode_many([text]), ["brand-new"])
    np.testing.assert_allclose(stored, tuned, atol=1e-5)
    assert np.abs(stored - frozen).max() > 1e-4  # not the base encoder's vector
    # A checkpoint whose tensors do not fit stops the worker at start, with the reason.
    broken = rewrite(tuned_checkpoint, tmp_path / "broken.safetensors", lambda t: t.update(
        {k: torch.zeros(2) for k in list(t) if k.startswith(TEXT_ENCODER_PREFIX)}
    ))  # fmt: skip
    with pytest.raises(CheckpointError, match="shape"):
        Engine.load(stream, EncoderSettings(checkpoint=broken), IndexSettings(), tiny_encoder)


def test_experiment_arms_get_the_item_encoder_of_their_own_checkpoint(
    tiny_encoder: TextEncoder, tuned_checkpoint: Path, tmp_path: Path
) -> None:
    experiments = tuned_vs_frozen(tuned_checkpoint, tmp_path)
    serving = ServingSettings(state_dir=tmp_path / "state")
    engines = load_arm_engines(
        serving, EncoderSettings(), IndexSettings(), experiments, tiny_encoder
    )
    assert engines["tuned"].item_encoder is not None and engines["tuned"].model is not None
    assert engines["frozen"].item_encoder is None and engines["frozen"].model is None
    assert engines["tuned"].encoder is engines["frozen"].encoder is tiny_encoder  # shared base


def test_arms_in_the_encoder_child_process_get_the_same_vectors(
    tiny_encoder: TextEncoder, tuned_checkpoint: Path, tmp_path: Path
) -> None:
    """Catalog encoding moved into the child (PROMPTREC_ENCODER_PROCESS): same index, per arm."""
    experiments = tuned_vs_frozen(tuned_checkpoint, tmp_path)
    records = [item_record("new-1", "Rock climbing gear"), item_record("new-2", "Jazz, 1959")]
    stored: dict[str, dict[str, np.ndarray]] = {}
    for where in ("in-process", "child"):
        serving = StreamSettings(state_dir=tmp_path / where)
        engines = load_arm_engines(
            serving, EncoderSettings(), IndexSettings(), experiments, tiny_encoder
        )
        if where == "child":
            process = attach_encoder_process(list(engines.values()), threads=1)
            assert engines["tuned"].encoder_process is engines["frozen"].encoder_process
            assert engines["tuned"].catalog_item_encoder is not None
            assert engines["frozen"].catalog_item_encoder is None
            # The tuned arm's variant is not the base encoder.
            tuned = engines["tuned"].catalog_item_encoder.encode_many(["Rock climbing gear"])
            base = engines["frozen"].catalog_encoder
            assert base is not None
            assert np.abs(tuned - base.encode_many(["Rock climbing gear"])).max() > 1e-4
        try:
            for name, engine in engines.items():
                CatalogUpdater(engine, serving.limits()).apply_many(records)
                vectors, found = engine.index.get_many(["new-1", "new-2"])
                assert found.all()
                stored[f"{where}/{name}"] = vectors
        finally:
            if where == "child":
                process.close()
    for name in ("tuned", "frozen"):
        np.testing.assert_allclose(stored[f"child/{name}"], stored[f"in-process/{name}"], atol=1e-5)
