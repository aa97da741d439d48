"""The worker's model state: encoder, prompts, candidate index, user profiles, scoring head.

Everything heavy (encoding, FAISS, the head) runs on one dedicated thread (:attr:`Engine.executor`),
so index updates, searches and learning steps never interleave and the asyncio loop that drives
Kafka stays responsive.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from promptrec.encoder import PromptTemplates, ScoringHead, TextEncoder, UserTower
from promptrec.encoder.exceptions import EncoderError
from promptrec.encoder.settings import EncoderSettings
from promptrec.index import CandidateIndex, create_index, restore_index
from promptrec.index.exceptions import CandidateIndexError
from promptrec.index.settings import IndexSettings
from promptrec.streams.popularity import RecentPopularity
from promptrec.streams.settings import StreamSettings

__all__ = ["Engine"]

log = logging.getLogger(__name__)


@dataclass
class Engine:
    """Model state of one worker, restored from ``state_dir`` when a snapshot is there."""

    stream: StreamSettings
    encoder_settings: EncoderSettings
    index_settings: IndexSettings
    encoder: TextEncoder
    prompts: PromptTemplates
    index: CandidateIndex
    profiles: CandidateIndex
    head: ScoringHead
    tower: UserTower = field(default_factory=UserTower)
    popularity: RecentPopularity = field(default_factory=RecentPopularity)
    executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine")
    )

    @property
    def index_path(self) -> Path:
        """Snapshot folder of the item index."""
        return self.stream.state_dir / "index"

    @property
    def profiles_path(self) -> Path:
        """Snapshot folder of the encoded user profiles."""
        return self.stream.state_dir / "profiles"

    @property
    def head_path(self) -> Path:
        """Checkpoint file of the scoring head."""
        return self.stream.state_dir / "head.safetensors"

    @classmethod
    def load(
        cls,
        stream: StreamSettings,
        encoder_settings: EncoderSettings,
        index_settings: IndexSettings,
        encoder: TextEncoder | None = None,
    ) -> Engine:
        """Load the encoder and restore the index, profiles and head from ``state_dir``.

        A missing or unusable snapshot is not fatal: the index is rebuilt from the compacted
        catalog topic and the head starts fresh (or from an offline checkpoint).
        """
        encoder = encoder or TextEncoder.from_settings(encoder_settings)
        prompts = PromptTemplates.load(encoder_settings.prompts_file)
        for name in (encoder_settings.item_prompt, encoder_settings.user_prompt):
            prompts.template(name)  # fail at start, not on the first event
        stream.state_dir.mkdir(parents=True, exist_ok=True)
        dim = encoder.dim
        index = _restore_or_create(stream.state_dir / "index", dim, index_settings)
        profiles = _restore_or_create(
            stream.state_dir / "profiles", dim, IndexSettings(kind="flat", use_gpu="never")
        )
        head = _restore_head(stream.state_dir / "head.safetensors", dim, encoder_settings)
        return cls(
            stream=stream,
            encoder_settings=encoder_settings,
            index_settings=index_settings,
            encoder=encoder,
            prompts=prompts,
            index=index,
            profiles=profiles,
            head=head,
        )

    def checkpoint(self) -> None:
        """Snapshot the index and profiles and checkpoint the head (atomic writes)."""
        self.index.snapshot(self.index_path)
        self.profiles.snapshot(self.profiles_path)
        self.head.save(self.head_path)

    def close(self) -> None:
        """Stop the compute thread."""
        self.executor.shutdown(wait=True, cancel_futures=False)


def _restore_or_create(path: Path, dim: int, settings: IndexSettings) -> CandidateIndex:
    if path.exists():
        try:
            index = restore_index(path, settings)
        except CandidateIndexError as exc:
            log.warning("ignoring unusable snapshot %s (%s); rebuilding from the topic", path, exc)
        else:
            if index.dim == dim:
                log.info("restored %d vectors from %s", len(index), path)
                return index
            log.warning("snapshot %s has dim %d, encoder has %d; rebuilding", path, index.dim, dim)
    return create_index(dim, settings)


def _restore_head(path: Path, dim: int, settings: EncoderSettings) -> ScoringHead:
    if path.exists():
        try:
            head = ScoringHead.load(path)
        except EncoderError as exc:
            log.warning("ignoring unusable head checkpoint %s (%s)", path, exc)
        else:
            if head.dim == dim:
                log.info("restored scoring head version %d from %s", head.version, path)
                return head
            log.warning("head checkpoint %s has dim %d, encoder has %d", path, head.dim, dim)
    return ScoringHead.from_settings(dim, settings)
