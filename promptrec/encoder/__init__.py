"""Encoder package: prompt templates, the sentence encoder, the user tower and the scoring head.

Pretrain, prompt, predict: item and user fields are wrapped into prompts (:class:`PromptTemplates`),
encoded by a frozen pretrained transformer (:class:`TextEncoder`), users are built from their
history in the item space (:class:`UserTower`), and a small head fine-tuned online on feedback
re-scores retrieved candidates (:class:`ScoringHead`).
"""

from __future__ import annotations

from promptrec.encoder.checkpoint import load_checkpoint, save_checkpoint
from promptrec.encoder.exceptions import CheckpointError, EncoderError, ModelLoadError, PromptError
from promptrec.encoder.head import HEAD_FORMAT, ScoringHead
from promptrec.encoder.prompts import SEGMENT_SEPARATOR, PromptTemplates
from promptrec.encoder.settings import EncoderSettings
from promptrec.encoder.text_encoder import TextEncoder, default_model_dir
from promptrec.encoder.towers import UserTower

__all__ = [
    "HEAD_FORMAT",
    "SEGMENT_SEPARATOR",
    "CheckpointError",
    "EncoderError",
    "EncoderSettings",
    "ModelLoadError",
    "PromptError",
    "PromptTemplates",
    "ScoringHead",
    "TextEncoder",
    "UserTower",
    "default_model_dir",
    "load_checkpoint",
    "save_checkpoint",
]
