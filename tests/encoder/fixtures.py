"""Shared fixtures: the real MiniLM encoder and a tiny random BERT for fast encoder tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from promptrec.encoder import TextEncoder, default_model_dir

_TOKENIZER_FILES = (
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)


@pytest.fixture(scope="session")
def minilm() -> TextEncoder:
    """The real default all-MiniLM-L6-v2, on CPU so golden values are exact."""
    return TextEncoder(device="cpu")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded, randomly initialised 2-layer BERT with the MiniLM tokenizer."""
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-bert")
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234)
        model = BertModel(config)
    model.save_pretrained(folder)
    source = default_model_dir()
    for name in _TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, folder / name)
    return folder


@pytest.fixture(scope="session")
def tiny_encoder(tiny_model_dir: Path) -> TextEncoder:
    """A TextEncoder over the tiny model (CPU, float32, 64 tokens)."""
    return TextEncoder(tiny_model_dir, device="cpu", max_length=64, batch_size=8)
