"""The worker's model state: encoder, prompts, candidate index, user profiles, scoring head.

Index updates, searches and learning steps run on one dedicated thread (:attr:`Engine.executor`),
so they never interleave and the asyncio loop that drives Kafka stays responsive. Catalog text
encoding, the one long job (seconds per batch), runs on threads of its own: during the start-up
replay on :attr:`Engine.replay_executor` (normal priority: nothing is served yet, and a shared
host should not slow the cold start), once the worker serves on :attr:`Engine.catalog_executor`,
a lower-priority thread (see :func:`catalog_executor`). Either way a catalog burst does not queue
recommendations behind it. Only the finished vectors go to the index, on the engine thread, so a
FAISS add never runs concurrently with a search.

With a trained checkpoint (``EncoderSettings.checkpoint``, from ``promptrec train``) the index
holds the model's adapted item vectors (text adapter + ID vector for items seen in training;
cold items from text alone) and user vectors come from its sequence model over the recent item
vectors; the scoring head then works in the model's space (its width) and starts from the head
``promptrec train`` fine-tuned into the checkpoint, when it holds one (:func:`base_head`; plain
cosine otherwise). Without a checkpoint, the index holds the frozen text vectors and the
:class:`UserTower` builds users, as before.
A checkpoint
trained with ``--finetune-encoder`` carries tuned encoder tensors: the engine's ``item_encoder``
(the base encoder with them) then encodes item texts, so new catalog items get the tuned
encoder's vectors; user prompts stay with the base encoder, as in training.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from promptrec.encoder import PromptTemplates, ScoringHead, TextEncoder, UserTower
from promptrec.encoder.exceptions import CheckpointError, EncoderError
from promptrec.encoder.head_checkpoint import load_checkpoint_head
from promptrec.encoder.model import RecModel, load_model
from promptrec.encoder.process import EncoderProcess, RemoteEncoder
from promptrec.encoder.settings import EncoderSettings
from promptrec.encoder.tuned import tuned_text_encoder
from promptrec.index import CandidateIndex, create_index, restore_index
from promptrec.index.exceptions import CandidateIndexError
from promptrec.index.settings import IndexSettings
from promptrec.serving.popularity import RecentPopularity
from promptrec.serving.settings import ServingSettings

__all__ = ["Engine", "attach_encoder_process", "base_head", "catalog_executor"]

log = logging.getLogger(__name__)


@dataclass
class Engine:
    """Model state of one worker, restored from ``state_dir`` when a snapshot is there."""

    serving: ServingSettings
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
    catalog_executor: ThreadPoolExecutor | None = None  # None: its own (see __post_init__)
    replay_executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=1, thread_name_prefix="replay")
    )
    model: RecModel | None = None
    model_tag: str = ""  # short hash of the checkpoint file; part of every item's content tag
    # Snapshot locations; None: the single-arm defaults under state_dir (experiment arms set them).
    index_dir: Path | None = None
    profiles_dir: Path | None = None
    head_file: Path | None = None
    item_encoder: TextEncoder | None = None  # tuned by the checkpoint; None: ``encoder``
    # Catalog encoding in a child process (:func:`attach_encoder_process`); None: in-process.
    encoder_process: EncoderProcess | None = None
    catalog_encoder: RemoteEncoder | None = None  # the base encoder in the child
    catalog_item_encoder: RemoteEncoder | None = None  # the tuned item encoder in the child

    def __post_init__(self) -> None:
        if self.catalog_executor is None:
            self.catalog_executor = catalog_executor(self.serving.catalog_nice)

    @property
    def encode_executor(self) -> ThreadPoolExecutor:
        """The live catalog-encoding thread (texts -> vectors; never touches the index)."""
        assert self.catalog_executor is not None  # set in __post_init__
        return self.catalog_executor

    def item_vectors(self, text: np.ndarray, item_ids: Sequence[str]) -> np.ndarray:
        """Index vectors ``(n, index dim)`` from ``(n, encoder dim)`` frozen text vectors."""
        if self.model is None:
            return text
        return self.model.index_item_vectors(text, item_ids)

    def build_users(
        self, histories: Sequence[np.ndarray], profiles: Sequence[np.ndarray | None]
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(users, has_signal)``: (b, index dim) float32 unit rows and (b,) bool.

        ``histories[i]`` is ``(n_i, index dim)`` item vectors from the index, oldest first;
        ``profiles[i]`` the ``(encoder dim,)`` encoded user prompt or None.
        """
        if self.model is None:
            return self.tower.build_many(histories, profiles)
        b, dim = len(histories), self.model.index_dim
        has_hist = np.array([len(h) > 0 for h in histories], dtype=bool)
        has_prof = np.array([p is not None for p in profiles], dtype=bool)
        # The sequence model has a profile path only when it was trained with one.
        has_signal = has_hist | (has_prof if self.model.config.profile_dim else False)
        users = np.zeros((b, dim), dtype=np.float32)
        rows = [int(i) for i in np.flatnonzero(has_signal)]
        if rows:
            prof = None
            if self.model.config.profile_dim:
                width = self.model.config.profile_dim
                prof = np.zeros((len(rows), width), dtype=np.float32)  # zero row: no profile
                for j, i in enumerate(rows):
                    p = profiles[i]
                    if p is not None:
                        prof[j] = p
            users[rows] = self.model.index_user_vectors([histories[i] for i in rows], prof)
        return users, has_signal

    @property
    def index_path(self) -> Path:
        """Snapshot folder of the item index."""
        return self.index_dir or self.serving.state_dir / "index"

    @property
    def profiles_path(self) -> Path:
        """Snapshot folder of the encoded user profiles."""
        return self.profiles_dir or self.serving.state_dir / "profiles"

    @property
    def head_path(self) -> Path:
        """Checkpoint file of the scoring head."""
        return self.head_file or self.serving.state_dir / "head.safetensors"

    @classmethod
    def load(
        cls,
        serving: ServingSettings,
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
        serving.state_dir.mkdir(parents=True, exist_ok=True)
        model, model_tag = _load_model(encoder_settings, encoder)
        dim = model.index_dim if model is not None else encoder.dim
        index = _restore_or_create(serving.state_dir / "index", dim, index_settings)
        # Profiles stay frozen text vectors (encoder width): the model projects them itself.
        profiles = _restore_or_create(
            serving.state_dir / "profiles", encoder.dim, IndexSettings(kind="flat", use_gpu="never")
        )
        base = base_head(encoder_settings, dim)  # a corrupt head in the checkpoint fails here
        head = _restore_head(serving.state_dir / "head.safetensors", dim, encoder_settings, base)
        return cls(
            serving=serving,
            encoder_settings=encoder_settings,
            index_settings=index_settings,
            encoder=encoder,
            prompts=prompts,
            index=index,
            profiles=profiles,
            head=head,
            model=model,
            model_tag=model_tag,
            item_encoder=tuned_text_encoder(model, encoder) if model is not None else None,
        )

    def checkpoint(self) -> None:
        """Snapshot the index and profiles and checkpoint the head (atomic writes)."""
        self.index.snapshot(self.index_path)
        self.profiles.snapshot(self.profiles_path)
        self.head.save(self.head_path)

    def close(self) -> None:
        """Stop the compute and catalog threads."""
        self.replay_executor.shutdown(wait=True, cancel_futures=False)
        self.encode_executor.shutdown(wait=True, cancel_futures=False)
        self.executor.shutdown(wait=True, cancel_futures=False)
        if self.encoder_process is not None:
            self.encoder_process.close()


def attach_encoder_process(engines: Sequence[Engine], threads: int) -> EncoderProcess:
    """Move the catalog encoding of ``engines`` (one worker's arms) into one child process.

    The child gets the base encoder and, for each engine whose checkpoint tuned the encoder, that
    variant (keyed by the checkpoint's tag, so arms on one checkpoint share it). It is started
    here, so a model that does not load fails the worker at start.
    """
    first = engines[0]
    variants: dict[str, dict[str, np.ndarray]] = {}
    for engine in engines:
        if engine.item_encoder is not None and engine.model is not None:
            weights = engine.model.text_encoder_weights or {}
            variants[engine.model_tag] = {
                k: v.detach().cpu().float().numpy() for k, v in weights.items()
            }
    # The child loads the encoder the engines hold (which may not be the one the settings name,
    # when it was passed in), with the same token limit and batch size.
    base = first.encoder
    settings = first.encoder_settings.model_copy(
        update={
            "model_dir": base.model_dir,
            "max_length": base.max_length,
            "batch_size": base.batch_size,
            "device": base.device,
        }
    )
    process = EncoderProcess(settings, threads, variants)
    process.start()
    for engine in engines:
        engine.encoder_process = process
        engine.catalog_encoder = RemoteEncoder(process)
        if engine.item_encoder is not None:
            engine.catalog_item_encoder = RemoteEncoder(process, engine.model_tag)
    return process


def catalog_executor(nice: int) -> ThreadPoolExecutor:
    """One thread for catalog encoding, ``nice`` steps below the process's priority.

    Linux niceness is per thread and inherited by the threads a thread creates, so torch's OpenMP
    workers started from this thread run at its priority too: when a recommendation batch and an
    encode want the same core, the scheduler gives it to the recommendation, and a worker with
    nothing else to do still encodes on every core. Elsewhere ``nice`` is ignored. (A thread may
    not raise its priority again without privileges, hence a separate thread for the replay.)
    """
    return ThreadPoolExecutor(
        max_workers=1, thread_name_prefix="catalog", initializer=_lower_priority, initargs=(nice,)
    )


def _lower_priority(nice: int) -> None:
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except OSError as exc:  # not permitted in some sandboxes: same priority, still its own thread
        log.warning("could not lower the catalog thread's priority: %s", exc)


def _load_model(settings: EncoderSettings, encoder: TextEncoder) -> tuple[RecModel | None, str]:
    """The checkpointed model (or None) and a short hash of its file.

    Raises:
        CheckpointError: The checkpoint is unreadable or was trained on another encoder.
    """
    path = settings.checkpoint
    if path is None:
        return None, ""
    model = load_model(path)
    config = model.config
    if config.text_dim and config.text_dim != encoder.dim:
        raise CheckpointError(
            f"checkpoint {path} expects {config.text_dim}-d text vectors; encoder "
            f"{encoder.model_dir.name} gives {encoder.dim}"
        )
    if config.encoder_model and config.encoder_model != encoder.model_dir.name:
        log.warning(
            "checkpoint %s was trained with encoder %s, the worker runs %s",
            path,
            config.encoder_model,
            encoder.model_dir.name,
        )
    if config.item_prompt != settings.item_prompt:
        log.warning(
            "checkpoint %s was trained on prompt %r, the worker renders %r",
            path,
            config.item_prompt,
            settings.item_prompt,
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    log.info(
        "loaded model %s (%s, dim %d, %d warm items, text fusion alpha %s)",
        path,
        digest,
        model.index_dim,
        len(model.warm_ids),
        model.fusion.alpha if model.fusion is not None else 0.0,
    )
    return model, digest


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


def base_head(settings: EncoderSettings, dim: int) -> ScoringHead:
    """The head every worker starts from: the checkpoint's fine-tuned head, else a fresh one.

    The checkpoint's head keeps its trained shape but learns online at the worker's
    ``learning_rate``. Model sync rebases onto this same head, so all workers share it.

    Raises:
        CheckpointError: The checkpoint's head is corrupt or does not fit the model's width.
    """
    path = settings.checkpoint
    head = load_checkpoint_head(path, settings.learning_rate) if path is not None else None
    if head is None:
        return ScoringHead.from_settings(dim, settings)
    if head.dim != dim:
        raise CheckpointError(f"checkpoint {path}: head has dim {head.dim}, the model has {dim}")
    if head.hidden != settings.head_hidden:
        log.info(
            "checkpoint head has hidden=%d (settings say %d)", head.hidden, settings.head_hidden
        )
    log.info("scoring head starts from the fine-tuned head in %s", path)
    return head


def _restore_head(
    path: Path, dim: int, settings: EncoderSettings, base: ScoringHead | None = None
) -> ScoringHead:
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
    return base if base is not None else ScoringHead.from_settings(dim, settings)
