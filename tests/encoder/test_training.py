"""Training on a tiny data set with a known answer, and the train / eval offline commands."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from promptrec.cli.main import main
from promptrec.encoder.model import ModelConfig, RecModel, load_model
from promptrec.encoder.sampling import SampledSoftmax
from promptrec.encoder.training import ModelScorer, TrainConfig, train_model
from promptrec.evaluation.baselines import PopScorer
from promptrec.evaluation.datasets import Dataset, Interaction, ItemRecord, write_jsonl
from promptrec.evaluation.protocol import Split, evaluate

TOPICS = ("hiking", "cooking", "jazz", "space")


def topic_dataset(n_users: int = 40, seed: int = 0) -> Dataset:
    """4 topics x 8 items; every user consumes 6 items of one topic, so the next item is
    one of the two unseen items of the user's topic (and the topic shows in the text)."""
    rng = random.Random(seed)
    items = [
        ItemRecord(f"{t}-{n}", f"{t.title()} item {n}", f"All about {t}.", {"tags": [t]})
        for t in TOPICS
        for n in range(8)
    ]
    events = []
    for u in range(n_users):
        topic = TOPICS[u % 4]
        for step, n in enumerate(rng.sample(range(8), 6)):
            events.append(Interaction(f"u{u}", f"{topic}-{n}", 1000 * (step * n_users + u)))
    users = {f"u{u}": {"age": str(20 + u)} for u in range(n_users)}
    return Dataset("topics", "jsonl", items, users, sorted(events, key=lambda e: e.ts))


def small_config(**overrides: object) -> ModelConfig:
    values: dict[str, object] = {"text_dim": 8, "dim": 16, "max_len": 8, "layers": 1}
    values.update(overrides)
    return ModelConfig(**values)  # type: ignore[arg-type]


@pytest.mark.slow
def test_model_learns_the_topic_structure_and_beats_pop() -> None:
    split = Split.from_dataset(topic_dataset())
    # Text vectors that carry the topic (one-hot) plus noise, as an encoder's would.
    rng = np.random.default_rng(0)
    text = 0.3 * rng.normal(size=(split.n_items, 8)).astype(np.float32)
    text[np.arange(split.n_items), np.arange(split.n_items) // 8] += 1.0
    train = TrainConfig(epochs=20, patience=20, batch_size=16, lr=1e-2, progress=False)
    result = train_model(split, text, small_config(dropout=0.1), train)
    scorer = ModelScorer(result.model, text, split.item_ids)
    model = evaluate(scorer, split, "test")
    pop = evaluate(PopScorer(split), split, "test")
    # The target is one of the two unseen items of the user's topic: near the top.
    assert model["HR@10"] >= 0.8
    assert model["NDCG@10"] > pop["NDCG@10"] + 0.3
    assert 1 <= result.best_epoch <= len(result.curve)
    # Seeded: the same run gives the same model.
    short = TrainConfig(epochs=2, patience=2, batch_size=16, lr=5e-3, progress=False)
    first = train_model(split, text, small_config(), short)
    assert train_model(split, text, small_config(), short).curve == first.curve


@pytest.mark.slow
def test_sampled_softmax_learns_the_topic_structure() -> None:
    split = Split.from_dataset(topic_dataset())
    rng = np.random.default_rng(0)
    text = 0.3 * rng.normal(size=(split.n_items, 8)).astype(np.float32)
    text[np.arange(split.n_items), np.arange(split.n_items) // 8] += 1.0
    pop = evaluate(PopScorer(split), split, "test")
    for sampler in ("uniform", "pop"):
        train = TrainConfig(
            epochs=20, patience=20, batch_size=16, lr=1e-2, progress=False, negatives=4,
            sampler=sampler,
        )  # fmt: skip
        result = train_model(split, text, small_config(dropout=0.1), train)
        model = evaluate(ModelScorer(result.model, text, split.item_ids), split, "test")
        assert model["HR@10"] >= 0.8, sampler
        assert model["NDCG@10"] > pop["NDCG@10"] + 0.3, sampler
        assert len(result.epoch_seconds) == len(result.curve)


def test_sampled_softmax_candidates_and_log_q_correction() -> None:
    class Tiny:
        n_items = 5
        train = [[0, 1, 1, 2], [3, 1]]  # targets (all but the first): 1, 1, 2, 1

    config = small_config(temperature=0.5)
    device = torch.device("cpu")
    pos = torch.tensor([1, 1, 2])
    for sampler, q in (("uniform", np.full(5, 0.2)), ("pop", np.array([1, 4, 2, 1, 1]) / 9)):
        s = SampledSoftmax(Tiny(), 3, sampler, 0, config, device)
        cand, labels, log_mix = s.candidates(pos)
        assert torch.equal(cand[labels], pos)  # every positive is its own candidate column
        assert torch.equal(cand, torch.unique(cand))  # no column twice
        p = np.array([0, 3, 1, 0, 0]) / 4
        expected = np.log((3 * p + 3 * q) / 6)[cand.numpy()]
        np.testing.assert_allclose(log_mix.numpy(), expected, rtol=1e-6)
    # The corrected logits are cos / temperature - log m over exactly those candidates.
    model = RecModel(config, ["a"]).eval()
    text = torch.randn(5, 8)
    s = SampledSoftmax(Tiny(), 2, "uniform", 0, config, device)
    inp, tgt = torch.tensor([[0, 1, -1]]), torch.tensor([[1, 2, -1]])
    real = tgt >= 0
    logits, labels = s.logits(model, inp, tgt, real, None, text, torch.zeros(5, dtype=torch.int64))
    s2 = SampledSoftmax(Tiny(), 2, "uniform", 0, config, device)  # same seed: same candidates
    cand, _, log_mix = s2.candidates(tgt[real])
    with torch.no_grad():
        items = model.adapter(text, torch.zeros(5, dtype=torch.int64))
        h = torch.nn.functional.normalize(
            model.sequence(items[inp.clamp(min=0)], None)[real], dim=-1
        )
    np.testing.assert_allclose(
        logits.detach().numpy(), ((h @ items[cand].T) / 0.5 - log_mix).numpy(), atol=1e-5
    )
    assert logits.shape == (2, len(cand)) and torch.equal(cand[labels], tgt[real])


def test_bad_sampled_softmax_settings_are_rejected(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="negatives"):
        TrainConfig(negatives=-1)
    with pytest.raises(ValueError, match="sampler"):
        TrainConfig(negatives=4, sampler="zipf")
    with pytest.raises(ValueError, match=">= 1 negative"):
        SampledSoftmax(object(), 0, "uniform", 0, small_config(), torch.device("cpu"))
    argv = ["train", "--data", ".", "--format", "jsonl", "--out", "x", "--negatives"]
    assert main([*argv, "-3"]) == 2
    assert "--negatives: must be >= 0" in capsys.readouterr().err
    assert main([*argv, "4", "--sampler", "zipf"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_profile_fusion_and_id_only_train(tmp_path: Path) -> None:
    split = Split.from_dataset(topic_dataset(n_users=8))
    text = np.zeros((split.n_items, 8), dtype=np.float32)
    profiles = np.ones((len(split.user_ids), 8), dtype=np.float32)
    train = TrainConfig(epochs=2, patience=2, batch_size=4, progress=False)
    fused = train_model(split, text, small_config(profile_dim=8), train, profiles)
    assert fused.model.sequence.profile is not None
    id_only = train_model(split, text, small_config(text_dim=0), train)
    assert id_only.model.adapter.text is None
    with pytest.raises(ValueError, match="text vectors"):
        train_model(split, np.zeros((split.n_items, 4), np.float32), small_config(), train)


@pytest.mark.slow
def test_train_and_eval_offline_commands(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    write_jsonl(topic_dataset(), data)
    common = [
        "--data", str(data), "--format", "jsonl", "--model-dir", str(tiny_model_dir),
        "--device", "cpu", "--cache-dir", str(tmp_path / "cache"), "--quiet",
        "--epochs", "3", "--dim", "16", "--max-len", "8", "--layers", "1",
    ]  # fmt: skip
    ckpt = tmp_path / "model.safetensors"
    sampled = ["--negatives", "8", "--sampler", "pop"]
    assert main(["train", *common, "--out", str(ckpt), "--user-profile", *sampled]) == 0
    summary = json.loads(ckpt.with_suffix(".json").read_text())
    assert (summary["train"]["negatives"], summary["train"]["sampler"]) == (8, "pop")
    assert summary["seconds_per_epoch"] > 0
    assert summary["model"]["encoder_model"] == tiny_model_dir.name
    assert set(summary["test"]) >= {"HR@10", "NDCG@10", "MRR@10"}
    assert set(summary["test_intervals"]) == {"NDCG@10", "HR@10"}
    assert load_model(ckpt).config.profile_dim == 32  # the tiny BERT's width
    assert list((tmp_path / "cache").glob("text-*.safetensors"))  # encoded once, cached

    out = tmp_path / "results.json"
    assert main(["eval", "offline", *common, "--out", str(out), "--no-user-profile"]) == 0
    results = json.loads(out.read_text())
    assert set(results) - {"fusion"} == {
        "dataset", "protocol", "methods", "intervals", "paired", "bootstrap", "training",
        "zero_shot_prompt", "zero_shot_mixed", "text_pop_prior",
    }  # fmt: skip
    assert len(results["zero_shot_mixed"]["valid_ndcg10_grid"]) == 3  # no release years: 3 x 1
    assert results["text_pop_prior"]["zero_shot"] is False
    fused = "promptrec-unfused" in results["methods"]  # fusion chosen on validation (alpha > 0)
    assert fused == (results.get("fusion", {}).get("alpha", 0.0) > 0)
    assert "{history}" in results["zero_shot_prompt"]["template_text"]
    assert len(results["zero_shot_prompt"]["valid_ndcg10_grid"]) == 6
    assert set(results["training"]) == {"promptrec", "promptrec-id-only"}
    for name, ci in results["intervals"].items():
        lo, hi = ci["NDCG@10"]
        assert lo <= results["methods"][name]["NDCG@10"] <= hi
    paired = results["paired"]["vs"]
    assert set(paired) == set(results["methods"]) - {"promptrec"}
    assert all(0 < t["p_value"] <= 1 and len(t["ci95"]) == 2 for t in paired.values())
    assert list(results["methods"]) == [
        "promptrec", *(["promptrec-unfused"] if fused else []), "pop", "itemknn",
        "promptrec-id-only", "promptrec-text-zero-shot", "promptrec-zero-shot-prompt",
        "promptrec-zero-shot-mixed", "promptrec-text-pop-prior",
    ]  # fmt: skip
    for metrics in results["methods"].values():
        assert set(metrics) == {
            "HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20", "MRR@10",
        }  # fmt: skip
    printed = capsys.readouterr().out
    assert "promptrec-id-only" in printed and "NDCG@10 95% CI" in printed and "vs pop" in printed

    # Every user's items are seen early: no cold test event, an error before any training.
    assert main(["eval", "offline", *common, "--out", str(out), "--cold-start", "0.9"]) == 1
    assert "no interaction after the 0.9 time cut" in capsys.readouterr().err
    assert main(["eval", "offline", *common, "--out", str(out), "--cold-start", "0"]) == 2
    assert "must be in (0, 1)" in capsys.readouterr().err

    # The checkpoint needs the profiles it was trained with.
    code = main(
        ["eval", "offline", *common, "--out", str(out), "--checkpoint", str(ckpt),
         "--no-user-profile"]
    )  # fmt: skip
    assert code == 1
    assert "--user-profile" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (
            ["train", "--data", "/nonexistent", "--format", "jsonl", "--out", "x"],
            2,
            "no such folder",
        ),
        (["train", "--data", ".", "--format", "csv", "--out", "x"], 2, "invalid choice"),
        (
            ["eval", "offline", "--data", "{tmp}", "--format", "jsonl", "--out", "{tmp}"],
            2,
            "is a folder",
        ),
        (
            [
                "eval",
                "offline",
                "--data",
                "{tmp}",
                "--format",
                "jsonl",
                "--out",
                "r.json",
                "--checkpoint",
                "/nope",
            ],
            2,
            "no such file",
        ),
        (
            ["train", "--data", "{tmp}", "--format", "movielens-100k", "--out", "{tmp}/m"],
            1,
            "missing file",
        ),
        (
            ["eval", "stream", "--data", "/nonexistent", "--format", "jsonl", "--out", "x"],
            2,
            "no such folder",
        ),
    ],
)
def test_command_errors_are_one_line_with_exit_codes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], code: int, message: str
) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == code
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
