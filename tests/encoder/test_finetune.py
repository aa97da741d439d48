"""Encoder fine-tuning: weights change, checkpoints round-trip, bad tensors fail, none is golden.

A tiny random BERT (tests/encoder/fixtures.py) stands in for MiniLM; everything else is real
(peft LoRA, safetensors checkpoints). The worker side is tests/serving/test_finetune_worker.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from promptrec.cli.main import main
from promptrec.encoder import TextEncoder
from promptrec.encoder.exceptions import CheckpointError, EncoderError
from promptrec.encoder.finetune import EncoderTuner, FinetuneConfig
from promptrec.encoder.model import TEXT_ENCODER_PREFIX, load_model, save_model
from promptrec.encoder.prompts import PromptTemplates
from promptrec.encoder.training import TrainConfig, TrainResult, train_model
from promptrec.encoder.tuned import tuned_text_encoder
from promptrec.evaluation.datasets import write_jsonl
from promptrec.evaluation.protocol import Split
from promptrec.evaluation.texts import item_texts
from tests.encoder.test_training import small_config, topic_dataset

MODES = ("lora", "last-layers")
CPU = torch.device("cpu")


def texts_of(split_items: int = 0) -> list[str]:
    texts = item_texts(topic_dataset(n_users=8), PromptTemplates.load(None))
    return texts[:split_items] if split_items else texts


def tune(encoder: TextEncoder, mode: str, n_users: int = 8, epochs: int = 2) -> TrainResult:
    """Joint training on the topic data set with the encoder tuned (or frozen: mode none)."""
    dataset = topic_dataset(n_users=n_users)
    split = Split.from_dataset(dataset)
    texts = item_texts(dataset, PromptTemplates.load(None))
    text = encoder.encode_many(texts)
    config = small_config(text_dim=encoder.dim)
    train = TrainConfig(epochs=epochs, patience=epochs, batch_size=4, lr=1e-2, progress=False)
    tuner = None
    if mode != "none":
        tuner = EncoderTuner(encoder, texts, FinetuneConfig(mode=mode, lr=1e-2), CPU, seed=0)
    return train_model(split, text, config, train, None, tuner)


@pytest.mark.parametrize("mode", MODES)
def test_one_step_changes_only_the_tuned_weights(tiny_encoder: TextEncoder, mode: str) -> None:
    texts = [*texts_of(4), ""]
    tuner = EncoderTuner(tiny_encoder, texts, FinetuneConfig(mode=mode), CPU)
    # Before any step the cached split forward is the frozen encoder (empty text: zero row).
    frozen = tiny_encoder.encode_many(texts[:4])
    np.testing.assert_allclose(tuner.cache[:4].numpy(), frozen, atol=1e-5)
    assert not tuner.cache[4].any()
    optimiser = torch.optim.Adam(tuner.parameters(), lr=1e-2)
    vectors = tuner.step_text(torch.tensor([[0, 1, 4]]), torch.tensor([[1, 2, -1]]))
    loss = -(vectors[0] * vectors[2]).sum()
    loss.backward()
    optimiser.step()
    after = tuner.refresh()
    assert np.abs(after[:4] - frozen).max() > 1e-4  # the encoder moved
    tensors, meta = tuner.export()
    base = tiny_encoder.model.state_dict()
    assert tensors and sorted(tensors) == meta["tensors"]
    for name, tensor in tensors.items():
        assert name.startswith("encoder.layer.1.")  # the top layer of two, nothing below
        assert not torch.equal(tensor, base[name])
    if mode == "lora":  # merged adapters: only the query and value projections changed
        assert {n.rsplit(".", 2)[-2] for n in tensors} <= {"query", "value"}
    assert meta["base_model"] == tiny_encoder.model_dir.name and meta["mode"] == mode


@pytest.mark.parametrize("mode", MODES)
def test_checkpoint_round_trip_encodes_as_in_training(
    tiny_encoder: TextEncoder, tmp_path: Path, mode: str
) -> None:
    result = tune(tiny_encoder, mode)
    assert result.text is not None and result.finetune["mode"] == mode
    path = tmp_path / "model.safetensors"
    save_model(path, result.model)
    stored = load_file(path)
    assert {k for k in stored if k.startswith(TEXT_ENCODER_PREFIX)} == {
        TEXT_ENCODER_PREFIX + n for n in result.model.text_encoder_weights
    }
    model = load_model(path)
    worker = tuned_text_encoder(model, tiny_encoder)
    assert worker is not None
    texts = texts_of()
    np.testing.assert_allclose(worker.encode_many(texts), result.text, atol=1e-5)
    # The worker's base encoder itself is untouched, and differs from the tuned one.
    assert np.abs(tiny_encoder.encode_many(texts) - result.text).max() > 1e-4


def test_default_none_is_unchanged_and_writes_no_encoder_tensors(
    tiny_encoder: TextEncoder, tmp_path: Path
) -> None:
    # Golden values from the code before fine-tuning existed (main at b6acb26, same seeds).
    split = Split.from_dataset(topic_dataset(n_users=16))
    text = np.random.default_rng(0).normal(size=(split.n_items, 8)).astype(np.float32)
    golden = {0: [0.082529, 0.105596, 0.123294], 8: [0.110876, 0.109447, 0.151379]}
    for negatives, curve in golden.items():
        train = TrainConfig(
            epochs=3, patience=3, batch_size=8, lr=5e-3, progress=False, negatives=negatives
        )
        result = train_model(split, text, small_config(), train)
        np.testing.assert_allclose(result.curve, curve, atol=2e-6)
        assert result.text is None and "finetune" not in result.summary()
    path = tmp_path / "frozen.safetensors"
    save_model(path, tune(tiny_encoder, "none").model)
    assert not [k for k in load_file(path) if k.startswith(TEXT_ENCODER_PREFIX)]
    model = load_model(path)
    assert model.text_encoder_meta is None and tuned_text_encoder(model, tiny_encoder) is None


@pytest.fixture(scope="module")
def tuned_checkpoint(tiny_encoder: TextEncoder, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tuned") / "model.safetensors"
    save_model(path, tune(tiny_encoder, "last-layers", epochs=1).model)
    return path


def rewrite(src: Path, dst: Path, edit: object, meta_edit: object = None) -> Path:
    """A copy of checkpoint ``src`` with its tensors / metadata edited."""
    from safetensors import safe_open

    with safe_open(str(src), framework="pt") as handle:
        metadata = dict(handle.metadata())
    tensors = load_file(src)
    edit(tensors)  # type: ignore[operator]
    if meta_edit is not None:
        meta_edit(metadata)  # type: ignore[operator]
    save_file(tensors, str(dst), metadata=metadata)
    return dst


def test_corrupt_missing_and_mismatched_encoder_tensors_fail_clearly(
    tiny_encoder: TextEncoder, tuned_checkpoint: Path, tmp_path: Path
) -> None:
    stored = load_file(tuned_checkpoint)
    names = sorted(k for k in stored if k.startswith(TEXT_ENCODER_PREFIX))
    first = names[0]

    def drop(t: dict[str, torch.Tensor]) -> None:
        del t[first]

    with pytest.raises(CheckpointError, match="missing"):
        load_model(rewrite(tuned_checkpoint, tmp_path / "missing.safetensors", drop))

    def no_meta(m: dict[str, str]) -> None:
        del m["text_encoder"]

    with pytest.raises(CheckpointError, match="no 'text_encoder' metadata"):
        load_model(rewrite(tuned_checkpoint, tmp_path / "nometa.st", lambda t: None, no_meta))

    def garbage_meta(m: dict[str, str]) -> None:
        m["text_encoder"] = "{not json"

    with pytest.raises(CheckpointError, match="bad 'text_encoder' metadata"):
        load_model(rewrite(tuned_checkpoint, tmp_path / "badmeta.st", lambda t: None, garbage_meta))

    def anonymous(m: dict[str, str]) -> None:
        meta = json.loads(m["text_encoder"])
        del meta["base_fingerprint"]
        m["text_encoder"] = json.dumps(meta)

    with pytest.raises(CheckpointError, match="bad 'text_encoder' metadata"):
        load_model(rewrite(tuned_checkpoint, tmp_path / "anon.st", lambda t: None, anonymous))

    def reshape(t: dict[str, torch.Tensor]) -> None:
        t[first] = torch.zeros(3, 3)

    model = load_model(rewrite(tuned_checkpoint, tmp_path / "shape.safetensors", reshape))
    with pytest.raises(CheckpointError, match="shape"):
        tuned_text_encoder(model, tiny_encoder)

    def poison(t: dict[str, torch.Tensor]) -> None:
        t[first] = torch.full_like(t[first], float("nan"))

    model = load_model(rewrite(tuned_checkpoint, tmp_path / "nan.safetensors", poison))
    with pytest.raises(CheckpointError, match="finite"):
        tuned_text_encoder(model, tiny_encoder)

    bogus = TEXT_ENCODER_PREFIX + "encoder.layer.9.output.dense.weight"

    def rename(t: dict[str, torch.Tensor]) -> None:
        t[bogus] = t.pop(first)

    def relist(m: dict[str, str]) -> None:
        meta = json.loads(m["text_encoder"])
        meta["tensors"] = sorted(n.removeprefix(TEXT_ENCODER_PREFIX) for n in [*names[1:], bogus])
        m["text_encoder"] = json.dumps(meta)

    model = load_model(rewrite(tuned_checkpoint, tmp_path / "name.safetensors", rename, relist))
    with pytest.raises(CheckpointError, match="not in the base model"):
        tuned_text_encoder(model, tiny_encoder)

    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(tuned_checkpoint.read_bytes()[:-100])
    with pytest.raises(CheckpointError):
        load_model(truncated)


def test_tensors_tuned_from_another_base_are_refused(
    tiny_encoder: TextEncoder, tiny_model_dir: Path, tuned_checkpoint: Path, tmp_path: Path
) -> None:
    # Same folder name and architecture, other weights: only the fingerprint tells them apart.
    from transformers import BertModel

    other = tmp_path / tiny_model_dir.name
    shutil.copytree(tiny_model_dir, other)
    torch.manual_seed(99)
    BertModel(BertModel.config_class.from_pretrained(str(other))).save_pretrained(other)
    encoder = TextEncoder(other, device="cpu", max_length=64)
    with pytest.raises(CheckpointError, match="was tuned from encoder"):
        tuned_text_encoder(load_model(tuned_checkpoint), encoder)


def test_tuner_rejects_bad_settings(tiny_encoder: TextEncoder) -> None:
    with pytest.raises(ValueError, match="finetune mode"):
        FinetuneConfig(mode="all")
    with pytest.raises(ValueError, match="layers"):
        FinetuneConfig(mode="lora", layers=0)
    with pytest.raises(EncoderError, match="2 layers, not 3"):
        EncoderTuner(tiny_encoder, ["x"], FinetuneConfig(mode="last-layers", layers=3), CPU)
    with pytest.raises(EncoderError, match="other than 'none'"):
        EncoderTuner(tiny_encoder, ["x"], FinetuneConfig(), CPU)


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_train_command_tunes_and_eval_offline_reads_the_checkpoint(
    tmp_path: Path, tiny_model_dir: Path, mode: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    write_jsonl(topic_dataset(n_users=12), data)
    common = [
        "--data", str(data), "--format", "jsonl", "--model-dir", str(tiny_model_dir),
        "--device", "cpu", "--no-cache", "--quiet", "--epochs", "2", "--dim", "16",
        "--max-len", "8", "--layers", "1", "--no-user-profile",
    ]  # fmt: skip
    ckpt = tmp_path / "model.safetensors"
    assert main(["train", *common, "--out", str(ckpt), "--finetune-encoder", mode]) == 0
    summary = json.loads(ckpt.with_suffix(".json").read_text())
    assert summary["finetune"]["mode"] == mode and summary["finetune"]["tensors"] > 0
    assert load_model(ckpt).text_encoder_meta is not None
    out = tmp_path / "results.json"
    assert main(["eval", "offline", *common, "--out", str(out), "--checkpoint", str(ckpt)]) == 0
    results = json.loads(out.read_text())
    assert results["methods"]["promptrec"]["NDCG@10"] == pytest.approx(summary["test"]["NDCG@10"])
    capsys.readouterr()
    bad = ["train", *common, "--out", str(tmp_path / "x.safetensors")]
    assert main([*bad, "--finetune-encoder", "everything"]) == 2
    assert "invalid choice" in capsys.readouterr().err
    assert main([*bad, "--finetune-encoder", mode, "--finetune-layers", "7"]) == 1
    assert "2 layers, not 7" in capsys.readouterr().err
