"""Serving several experiment arms in one worker: one engine view, recommender and learner per arm.

Each arm gets its own :class:`~promptrec.serving.engine.Engine` *view*: the text encoder, the
prompts, the engine thread and the recent-popularity fallback are shared; the item index is
shared by arms with the same :class:`~promptrec.serving.experiments.IndexKey` (item template,
checkpoint), the user-profile store by arms with the same (user template, checkpoint), and every
arm has its own scoring head. Without an experiments file there is one arm, ``default``, whose
engine is exactly :meth:`Engine.load` (same snapshot paths), so serving is unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from promptrec.encoder import PromptTemplates, TextEncoder
from promptrec.encoder.model import RecModel
from promptrec.encoder.settings import EncoderSettings
from promptrec.encoder.tuned import tuned_text_encoder
from promptrec.events.schemas import FeedbackEvent
from promptrec.index import CandidateIndex
from promptrec.index.settings import IndexSettings
from promptrec.serving.engine import (
    Engine,
    _load_model,
    _restore_head,
    _restore_or_create,
    base_head,
    catalog_executor,
)
from promptrec.serving.experiments import Arm, Experiments, IndexKey
from promptrec.serving.learner import LearnOutcome, OnlineLearner
from promptrec.serving.popularity import RecentPopularity
from promptrec.serving.recommender import Recommender
from promptrec.serving.settings import ServingSettings

__all__ = ["ArmState", "Arms", "load_arm_engines"]

_SLUG = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass
class ArmState:
    """What one arm serves with."""

    arm: Arm
    engine: Engine
    recommender: Recommender
    learner: OnlineLearner


def _slug(text: str) -> str:
    return _SLUG.sub("_", text).strip("_") or "x"


def load_arm_engines(
    serving: ServingSettings,
    encoder_settings: EncoderSettings,
    index_settings: IndexSettings,
    experiments: Experiments,
    encoder: TextEncoder | None = None,
) -> dict[str, Engine]:
    """Arm name -> its engine view, in arm order; stores shared as described in the module doc.

    Snapshots of an active experiment live under ``state_dir/arms/``: ``index-<template>-<n>``
    per item index, ``profiles-<template>-<n>`` per profile store, ``head-<arm>.safetensors``.
    """
    if not experiments.active:
        arm = experiments.arms[0]
        return {arm.name: Engine.load(serving, encoder_settings, index_settings, encoder)}
    encoder = encoder or TextEncoder.from_settings(encoder_settings)
    prompts = PromptTemplates.load(encoder_settings.prompts_file)
    popularity = RecentPopularity()  # one fallback: clicks do not depend on the arm
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine")
    encode_executor = catalog_executor(serving.catalog_nice)  # catalog threads: shared too
    replay_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="replay")
    root = serving.state_dir / "arms"
    root.mkdir(parents=True, exist_ok=True)
    models: dict[Path | None, tuple[RecModel | None, str]] = {}
    item_encoders: dict[Path | None, TextEncoder | None] = {}
    indexes: dict[IndexKey, tuple[CandidateIndex, Path]] = {}
    profiles: dict[tuple[str, Path | None], tuple[CandidateIndex, Path]] = {}
    out: dict[str, Engine] = {}
    for arm in experiments.arms:
        settings = _arm_settings(encoder_settings, arm)
        if arm.checkpoint not in models:
            models[arm.checkpoint] = _load_model(settings, encoder)
            found = models[arm.checkpoint][0]
            item_encoders[arm.checkpoint] = tuned_text_encoder(found, encoder) if found else None
        model, model_tag = models[arm.checkpoint]
        dim = model.index_dim if model is not None else encoder.dim
        if arm.index_key not in indexes:
            path = root / f"index-{_slug(arm.item_prompt)}-{len(indexes)}"
            indexes[arm.index_key] = (_restore_or_create(path, dim, index_settings), path)
        pkey = (arm.user_prompt, arm.checkpoint)
        if pkey not in profiles:
            path = root / f"profiles-{_slug(arm.user_prompt)}-{len(profiles)}"
            flat = IndexSettings(kind="flat", use_gpu="never")
            profiles[pkey] = (_restore_or_create(path, encoder.dim, flat), path)
        head_file = root / f"head-{_slug(arm.name)}.safetensors"
        index, index_dir = indexes[arm.index_key]
        store, profiles_dir = profiles[pkey]
        out[arm.name] = Engine(
            serving=serving,
            encoder_settings=settings,
            index_settings=index_settings,
            encoder=encoder,
            prompts=prompts,
            index=index,
            profiles=store,
            head=_restore_head(head_file, dim, settings, base_head(settings, dim)),
            popularity=popularity,
            executor=executor,
            catalog_executor=encode_executor,
            replay_executor=replay_executor,
            model=model,
            model_tag=model_tag,
            index_dir=index_dir,
            profiles_dir=profiles_dir,
            head_file=head_file,
            item_encoder=item_encoders[arm.checkpoint],
        )
    return out


def _arm_settings(settings: EncoderSettings, arm: Arm) -> EncoderSettings:
    return settings.model_copy(
        update={
            "item_prompt": arm.item_prompt,
            "user_prompt": arm.user_prompt,
            "checkpoint": arm.checkpoint,
        }
    )


class Arms:
    """The worker's arms: assignment, per-arm serving state, feedback routing, checkpoints.

    Args:
        experiments: The checked experiments (one ``default`` arm without a file).
        states: One :class:`ArmState` per arm, in arm order.
    """

    def __init__(self, experiments: Experiments, states: Sequence[ArmState]) -> None:
        self.experiments = experiments
        self.states = {s.arm.name: s for s in states}
        self.first = states[0]

    @property
    def active(self) -> bool:
        """Whether answers name their experiment and arm."""
        return self.experiments.active

    @property
    def names(self) -> list[str]:
        """Arm names in file order."""
        return list(self.states)

    def of_users(self, user_ids: Sequence[str]) -> list[ArmState]:
        """The arm of each user; a query without a user (similar items) gets the first arm."""
        arms = self.experiments.assign_many([u or "" for u in user_ids])
        return [
            self.states[a.name] if u else self.first for a, u in zip(arms, user_ids, strict=True)
        ]

    def distinct_engines(self) -> list[Engine]:
        """One engine per distinct (item index, profile store) pair: what the catalog updates."""
        seen: dict[tuple[int, int], Engine] = {}
        for state in self.states.values():
            key = (id(state.engine.index), id(state.engine.profiles))
            seen.setdefault(key, state.engine)
        return list(seen.values())

    def arm_of_feedback(self, event: FeedbackEvent) -> ArmState:
        """The arm whose recommendation the feedback is about (else the user's current arm)."""
        rec_id = event.recommendation_id or ""
        if rec_id and len(self.states) > 1:
            for state in self.states.values():
                if state.learner.remembers(rec_id):
                    return state
        return self.of_users([event.user_id])[0]

    def learn_many(
        self, events: Sequence[FeedbackEvent], recents: Sequence[Sequence[str]]
    ) -> tuple[LearnOutcome, dict[str, LearnOutcome]]:
        """Each event learned by its arm's head; the merged outcome and the per-arm ones."""
        if len(self.states) == 1:
            out = self.first.learner.learn_many(events, recents)
            return out, {self.first.arm.name: out}
        groups: dict[str, list[int]] = {}
        for i, event in enumerate(events):
            groups.setdefault(self.arm_of_feedback(event).arm.name, []).append(i)
        merged = LearnOutcome()
        per_arm: dict[str, LearnOutcome] = {}
        scores: list[np.ndarray] = []
        labels: list[np.ndarray] = []
        losses: list[tuple[float, int]] = []
        for name, positions in groups.items():
            outcome = self.states[name].learner.learn_many(
                [events[i] for i in positions], [recents[i] for i in positions]
            )
            per_arm[name] = outcome
            merged.learned += outcome.learned
            merged.rejected.extend((positions[j], err) for j, err in outcome.rejected)
            if outcome.scores is not None and outcome.labels is not None:
                scores.append(outcome.scores)
                labels.append(outcome.labels)
            if outcome.loss is not None:
                losses.append((outcome.loss, outcome.learned))
        if scores:
            merged.scores, merged.labels = np.concatenate(scores), np.concatenate(labels)
        if losses:
            merged.loss = sum(loss * n for loss, n in losses) / max(1, sum(n for _, n in losses))
        merged.rejected.sort(key=lambda pair: pair[0])
        return merged, per_arm

    def checkpoint(self) -> None:
        """Snapshot every distinct index and profile store once, and every arm's head."""
        done: set[int] = set()
        for state in self.states.values():
            engine = state.engine
            for store, path in ((engine.index, engine.index_path),
                                (engine.profiles, engine.profiles_path)):  # fmt: skip
                if id(store) not in done:
                    store.snapshot(path)
                    done.add(id(store))
            engine.head.save(engine.head_path)
