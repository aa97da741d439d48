"""Settings of the Kafka-free serving domain: histories, retrieval, ranking, state."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ServingSettings"]


class ServingSettings(BaseSettings):
    """Settings of the ``promptrec.serving`` package (env prefix ``PROMPTREC_``)."""

    model_config = SettingsConfigDict(env_prefix="PROMPTREC_", extra="ignore")

    history_len: int = Field(
        default=50, ge=1, le=10000, description="Interactions kept per user (bounded history)."
    )
    recent_items: int = Field(
        default=20, ge=1, le=1000, description="Recent history items that form the user vector."
    )
    top_k: int = Field(default=10, ge=1, le=1000, description="Items per recommendation.")
    max_k: int = Field(default=100, ge=1, le=1000, description="Largest k a request may ask for.")
    candidates: int = Field(
        default=100, ge=1, le=10000, description="FAISS candidates scored by the head per query."
    )
    feedback_batch_size: int = Field(
        default=32, ge=1, le=10000, description="Feedback events per online-learning step."
    )
    state_dir: Path = Field(
        default=Path("state"), description="Index snapshots and head checkpoints live here."
    )
    checkpoint_interval_s: float = Field(
        default=30.0, gt=0, description="Seconds between index snapshots and head checkpoints."
    )
    experiments_file: Path | None = Field(
        default=None,
        description=(
            "JSON file of an A/B experiment (arms with weights, prompts, checkpoint); "
            "unset: one arm, default."
        ),
    )
    filter_max_keys: int = Field(
        default=8, ge=1, le=64, description="Most attribute keys in a request's filter."
    )
    filter_max_values: int = Field(
        default=64, ge=1, le=10000, description="Most values per key in a request's filter."
    )
    filter_max_excludes: int = Field(
        default=1000, ge=0, le=100000, description="Most exclude_item_ids in a request's filter."
    )
    model_sync_interval_s: float = Field(
        default=1.0,
        gt=0,
        description="Seconds between publications of this worker's head updates (model-updates).",
    )

    catalog_nice: int = Field(
        default=10,
        ge=0,
        le=19,
        description="Niceness added to the thread (and its torch threads) that encodes catalog "
        "updates once the worker serves, so the per-event path gets the CPU first during a burst "
        "(the start-up replay keeps normal priority); 0 = same priority.",
    )
    encoder_process: bool = Field(
        default=False,
        description="Encode catalog texts (items and user profiles) in a child process with its "
        "own copy of the encoder, so encoding does not share the worker's GIL with the event "
        "loop. Off by default: on 2 cores it measured no faster than the catalog thread (README "
        "'Round 5') and the child costs ~0.6-0.7 GB RSS with MiniLM.",
    )

    def filter_limits(self) -> dict[str, int]:
        """The filter bounds as :class:`~promptrec.events.schemas.Limits` keyword arguments."""
        return {
            "max_filter_keys": self.filter_max_keys,
            "max_filter_values": self.filter_max_values,
            "max_filter_excludes": self.filter_max_excludes,
        }
