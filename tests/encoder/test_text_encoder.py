"""TextEncoder: golden values, parity with sentence-transformers, batching, truncation, errors."""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from promptrec.encoder import EncoderSettings, ModelLoadError, TextEncoder, default_model_dir

# all-MiniLM-L6-v2, "A man is eating food.", first 8 dimensions (computed once on CPU, float32;
# they agree with sentence-transformers' own encode()).
GOLDEN_SENTENCE = "A man is eating food."
GOLDEN_FIRST8 = np.array(
    [0.033242, 0.004406, -0.006277, 0.048379, -0.138702, -0.033617, 0.101128, -0.054385],
    dtype=np.float32,
)

TEXTS = [
    "A man is eating food.",
    "",
    "Hiking boots for mountain trails, waterproof and light.",
    "x",
    "Jazz records from the fifties " * 12,
    "Chocolate cake recipe",
    "Zero-shot prompt: Item: Dune. Genres: sci-fi.",
    "   ",
    "A user with profile: age: 30; interests: jazz.",
    "Trekking backpack for alpine hikes",
]


@pytest.mark.slow
def test_golden_values(minilm: TextEncoder) -> None:
    vector = minilm.encode_one(GOLDEN_SENTENCE)
    assert minilm.dim == 384
    assert vector.shape == (384,)
    assert vector.dtype == np.float32
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(vector[:8], GOLDEN_FIRST8, atol=1e-4)


@pytest.mark.slow
def test_matches_sentence_transformers(minilm: TextEncoder) -> None:
    from sentence_transformers import SentenceTransformer

    sentences = [GOLDEN_SENTENCE, "The new movie is awesome", "Kafka streams carry user events"]
    reference = SentenceTransformer(str(default_model_dir()), device="cpu").encode(
        sentences, normalize_embeddings=True
    )
    ours = minilm.encode_many(sentences)
    cosines = (ours * reference).sum(axis=1)
    assert cosines.min() > 0.999, cosines


@pytest.mark.slow
def test_semantic_sanity(minilm: TextEncoder) -> None:
    anchor, near, far = minilm.encode_many(
        [
            "hiking boots for mountain trails",
            "trekking backpack for alpine hikes",
            "chocolate cake recipe",
        ]
    )
    assert float(anchor @ near) > float(anchor @ far) + 0.1


@pytest.mark.slow
def test_truncation_equals_first_tokens(minilm: TextEncoder) -> None:
    # Words that are one token each, so the first max_length - 2 words are exactly the tokens
    # kept after [CLS] ... [SEP] truncation.
    words = ["the", "of", "and", "to", "in", "is", "was", "for", "on", "that", "with"]
    tokenizer = minilm._tokenizer
    assert all(len(tokenizer.tokenize(w)) == 1 for w in words)
    long_words = [words[i % len(words)] for i in range(10_000)]
    long_vector = minilm.encode_one(" ".join(long_words))
    head_vector = minilm.encode_one(" ".join(long_words[: minilm.max_length - 2]))
    assert np.isfinite(long_vector).all()
    np.testing.assert_allclose(long_vector, head_vector, atol=1e-5)
    shorter = minilm.encode_one(" ".join(long_words[: minilm.max_length - 12]))
    assert not np.allclose(long_vector, shorter, atol=1e-5)  # the test can tell texts apart


@pytest.mark.slow
def test_minilm_batching_invariance(minilm: TextEncoder) -> None:
    one = minilm.encode_many(TEXTS, batch_size=1)
    many = minilm.encode_many(TEXTS, batch_size=64)
    np.testing.assert_allclose(one, many, atol=1e-5)


def test_properties_and_from_settings(tiny_model_dir: Path) -> None:
    settings = EncoderSettings(model_dir=tiny_model_dir, device="cpu", max_length=32, batch_size=3)
    encoder = TextEncoder.from_settings(settings)
    assert encoder.dim == 32
    assert encoder.device == "cpu"
    assert encoder.dtype == "float32"  # fp16 is ignored on CPU
    assert encoder.model_dir == tiny_model_dir
    assert encoder.max_length == 32
    assert os.environ.get("HF_HUB_OFFLINE") is not None


def test_batching_invariance(tiny_encoder: TextEncoder) -> None:
    one = tiny_encoder.encode_many(TEXTS, batch_size=1)
    many = tiny_encoder.encode_many(TEXTS, batch_size=64)
    three = tiny_encoder.encode_many(TEXTS, batch_size=3)
    np.testing.assert_allclose(one, many, atol=1e-5)
    np.testing.assert_allclose(one, three, atol=1e-5)


def test_order_is_preserved(tiny_encoder: TextEncoder) -> None:
    batch = tiny_encoder.encode_many(TEXTS)
    singles = np.stack([tiny_encoder.encode_one(t) for t in TEXTS])
    np.testing.assert_allclose(batch, singles, atol=1e-5)
    reversed_batch = tiny_encoder.encode_many(TEXTS[::-1])
    np.testing.assert_allclose(reversed_batch[::-1], batch, atol=1e-5)
    # Distinct texts give distinct rows, so a permutation would have been caught above.
    assert not np.allclose(batch[0], batch[2], atol=1e-3)


def test_output_shape_dtype_and_norm(tiny_encoder: TextEncoder) -> None:
    vectors = tiny_encoder.encode_many(TEXTS, progress=True)
    assert vectors.shape == (len(TEXTS), 32)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_empty_list(tiny_encoder: TextEncoder) -> None:
    vectors = tiny_encoder.encode_many([])
    assert vectors.shape == (0, 32)
    assert vectors.dtype == np.float32


def test_empty_string_is_finite_and_normalised(tiny_encoder: TextEncoder) -> None:
    vector = tiny_encoder.encode_one("")
    assert vector.shape == (32,)
    assert np.isfinite(vector).all()
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)


def test_truncation_on_tiny_model(tiny_encoder: TextEncoder) -> None:
    text = " ".join(["the"] * 10_000)
    vector = tiny_encoder.encode_one(text)
    expected = tiny_encoder.encode_one(" ".join(["the"] * (tiny_encoder.max_length - 2)))
    np.testing.assert_allclose(vector, expected, atol=1e-5)


def test_worker_thread_gives_same_vectors(tiny_encoder: TextEncoder) -> None:
    here = tiny_encoder.encode_many(TEXTS)
    with ThreadPoolExecutor(max_workers=1) as pool:
        there = pool.submit(tiny_encoder.encode_many, TEXTS).result()
    np.testing.assert_allclose(here, there, atol=1e-6)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: tiny_encoder.encode_many(TEXTS), range(4)))
    for result in results:
        np.testing.assert_allclose(result, here, atol=1e-5)


def test_rejects_bad_input(tiny_encoder: TextEncoder) -> None:
    with pytest.raises(TypeError):
        tiny_encoder.encode_many("not a list")
    with pytest.raises(TypeError):
        tiny_encoder.encode_many(["ok", 3])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        tiny_encoder.encode_many(["ok"], batch_size=0)


def test_missing_folder_raises_model_load_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ModelLoadError, match="nope"):
        TextEncoder(missing, device="cpu")


def test_folder_without_config_raises(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"config\.json"):
        TextEncoder(tmp_path, device="cpu")


def test_broken_model_folder_raises(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelLoadError, match=re.escape(str(tmp_path))):
        TextEncoder(tmp_path, device="cpu")


def test_folder_without_weights_raises(tmp_path: Path, tiny_model_dir: Path) -> None:
    for item in tiny_model_dir.iterdir():
        if item.suffix != ".safetensors":
            (tmp_path / item.name).write_bytes(item.read_bytes())
    with pytest.raises(ModelLoadError, match=re.escape(str(tmp_path))):
        TextEncoder(tmp_path, device="cpu")


def test_bad_device_and_arguments(tiny_model_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match="device"):
        TextEncoder(tiny_model_dir, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ModelLoadError, match="cuda"):
            TextEncoder(tiny_model_dir, device="cuda")
    with pytest.raises(ValueError):
        TextEncoder(tiny_model_dir, device="cpu", batch_size=0)
    with pytest.raises(ValueError):
        TextEncoder(tiny_model_dir, device="cpu", max_length=1)
