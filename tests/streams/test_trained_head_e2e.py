"""A real worker process started with ``PROMPTREC_ENCODER_CHECKPOINT`` alone uses its trained head.

The worker's head is internal; what it started from shows in the head it checkpoints to its
state folder (no feedback arrives, so it has not learned anything by then): it must be the
head ``promptrec train`` wrote into the model checkpoint, not a fresh cosine head.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.cluster import worker_command
from promptrec.broker.embedded import EmbeddedBroker
from promptrec.encoder import default_model_dir
from promptrec.encoder.checkpoint import load_checkpoint, save_checkpoint
from promptrec.encoder.head import ScoringHead
from promptrec.encoder.head_checkpoint import HEAD_PREFIX, attach_head
from promptrec.encoder.model import ModelConfig, RecModel, save_model
from tests.pipeline_fixtures import WorkerProcess, settings_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DIM = 16


def _checkpoint(path: Path) -> ScoringHead:
    """A model over the worker's MiniLM (384-d text) with a trained (anti-cosine) head."""
    torch.manual_seed(0)
    config = ModelConfig(
        text_dim=384, dim=DIM, max_len=8, layers=1, encoder_model=default_model_dir().name
    )
    save_model(path, RecModel(config, ["a", "b"]))
    rng = np.random.default_rng(0)
    head = ScoringHead(DIM, learning_rate=0.05)
    for _ in range(20):
        u = rng.normal(size=(64, DIM)).astype(np.float32)
        v = rng.normal(size=(64, DIM)).astype(np.float32)
        head.learn_many(u, v, (np.sum(u * v, axis=1) < 0).astype(np.float32))
    attach_head(path, head)
    return head


def test_worker_starts_from_the_trained_head_in_the_checkpoint(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    ckpt = tmp_path / "model.safetensors"
    trained = _checkpoint(ckpt)
    settings = settings_for(broker.url, tmp_path / "state", partitions=1)
    proc = WorkerProcess(
        settings,
        tmp_path / "worker.log",
        env={"PROMPTREC_ENCODER_CHECKPOINT": str(ckpt), "PROMPTREC_CHECKPOINT_INTERVAL_S": "1"},
    )
    proc.start()
    try:
        proc.wait_ready()
        saved = settings.state_dir / "head.safetensors"
        deadline = time.monotonic() + 60
        while not saved.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        proc.stop()
    assert "starts from the fine-tuned head" in proc.log_tail(400)
    head = ScoringHead.load(saved)
    for name, value in trained.to_tensors().items():
        torch.testing.assert_close(head.to_tensors()[name], value)
    assert not torch.equal(head.to_tensors()["w2"], ScoringHead(DIM).to_tensors()["w2"])


def test_worker_with_a_corrupt_head_in_the_checkpoint_stops_with_one_line(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    ckpt = tmp_path / "model.safetensors"
    _checkpoint(ckpt)
    tensors, meta = load_checkpoint(ckpt)
    tensors[HEAD_PREFIX + "w1"] = torch.zeros(3, 3)
    save_checkpoint(ckpt, tensors, meta)
    settings = settings_for(broker.url, tmp_path / "state", partitions=1)
    env = {**os.environ, "PROMPTREC_ENCODER_CHECKPOINT": str(ckpt)}
    done = subprocess.run(
        worker_command(settings), env=env, capture_output=True, timeout=180, check=False
    )
    assert done.returncode == 1
    last = done.stderr.decode().strip().splitlines()[-1]
    assert last.startswith("promptrec worker: error: checkpoint ")
    assert "head tensor 'w1' has shape (3, 3)" in last and str(ckpt) in last
