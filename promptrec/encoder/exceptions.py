"""Errors of the ``promptrec.encoder`` package: one base class, one subclass per failure."""

from __future__ import annotations

__all__ = ["CheckpointError", "EncoderError", "ModelLoadError", "PromptError"]


class EncoderError(Exception):
    """Base class of every error raised by ``promptrec.encoder``."""


class PromptError(EncoderError):
    """A prompt template or template file is invalid, or a template name is unknown."""


class CheckpointError(EncoderError):
    """A checkpoint cannot be written, or is missing, corrupt or of the wrong format."""


class ModelLoadError(EncoderError):
    """The transformer model or its tokenizer cannot be loaded from the local folder."""
