"""Catalog updates: items and user profiles -> prompt -> one encoder call per batch -> index.

Each worker replays the compacted ``items`` and ``users`` topics in full (see
:mod:`promptrec.streams.catalog_reader`), so every worker holds the whole catalog whichever
interaction partitions it owns. Items are re-encoded only when their prompt text changes: the
index stores a content hash per item, which also makes a restored snapshot a cache for the replay.

A batch is applied in two steps so the slow one can run off the engine thread:
:meth:`CatalogUpdater.prepare` decodes, renders and encodes (seconds for a full batch; it only
reads the stores' content tags), :meth:`CatalogUpdater.commit` writes the finished vectors to the
index and profile store (milliseconds) and must run where searches run, on the engine thread.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from promptrec.encoder.features import render_fields
from promptrec.events.exceptions import InvalidEvent, ReasonCode
from promptrec.events.schemas import Limits, decode_item, decode_user
from promptrec.serving.engine import Engine

__all__ = ["CatalogOutcome", "CatalogPlan", "CatalogRecord", "CatalogUpdater"]


@dataclass(frozen=True)
class CatalogRecord:
    """One raw record of the items or users topic, forwarded by the catalog reader."""

    topic: str  # logical name: "items" or "users"
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    marker: bool = False  # end of the start-up replay, not a record


@dataclass
class CatalogOutcome:
    """What one :meth:`CatalogUpdater.apply_many` call did."""

    upserted: int = 0
    removed: int = 0
    unchanged: int = 0
    profiles: int = 0
    dead: list[tuple[CatalogRecord, InvalidEvent]] = field(default_factory=list)


@dataclass
class CatalogPlan:
    """A prepared batch (:meth:`CatalogUpdater.prepare`): vectors encoded, stores untouched."""

    dead: list[tuple[CatalogRecord, InvalidEvent]] = field(default_factory=list)
    drop_items: list[str] = field(default_factory=list)
    drop_users: list[str] = field(default_factory=list)
    item_ids: list[str] = field(default_factory=list)
    item_tags: list[str] = field(default_factory=list)
    item_vectors: np.ndarray | None = None  # (len(item_ids), index dim)
    user_ids: list[str] = field(default_factory=list)
    user_tags: list[str] = field(default_factory=list)
    user_vectors: np.ndarray | None = None  # (len(user_ids), encoder dim)
    attrs: dict[str, Mapping[str, Any]] = field(default_factory=dict)  # item_id -> attributes
    unchanged: int = 0  # items whose text (content tag) did not change


class CatalogUpdater:
    """Applies catalog records to the engine's item index and user-profile store."""

    def __init__(self, engine: Engine, limits: Limits) -> None:
        self.engine = engine
        self.limits = limits
        settings = engine.encoder_settings
        self._item_prompt = settings.item_prompt
        self._user_prompt = settings.user_prompt
        self._max_chars = settings.max_text_chars
        self._model_tag = f"{engine.encoder.model_dir.name}:{engine.encoder.max_length}"
        if engine.encoder.dtype == "int8":  # switching modes re-encodes the restored snapshot
            self._model_tag += ":int8"
        if engine.model_tag:  # adapted vectors depend on the checkpoint too
            self._model_tag += f":{engine.model_tag}"
        # Ids seen during the start-up replay; ids restored from a snapshot but absent from the
        # topic were deleted while the worker was down (and their tombstones compacted away).
        self._replayed_items: set[str] | None = set()
        self._replayed_users: set[str] | None = set()

    def apply_many(self, records: Sequence[CatalogRecord]) -> CatalogOutcome:
        """Decode, render prompts, encode what changed in one call, update index and profiles."""
        return self.commit(self.prepare(records))

    def prepare(self, records: Sequence[CatalogRecord]) -> CatalogPlan:
        """Decode and render the batch and encode what changed; the stores are only read.

        Safe on another thread than searches as long as no :meth:`commit` of this updater runs
        at the same time (the catalog agent awaits each batch's commit before the next prepare).
        """
        plan = CatalogPlan()
        items: dict[str, str] = {}  # item_id -> prompt text; last record of an id wins
        users: dict[str, str] = {}
        drop_items: set[str] = set()
        drop_users: set[str] = set()
        for rec in records:
            try:
                self._collect(rec, items, plan.attrs, users, drop_items, drop_users)
            except InvalidEvent as exc:
                plan.dead.append((rec, exc))
        plan.drop_items, plan.drop_users = sorted(drop_items), sorted(drop_users)
        item_todo = self._changed(self.engine.index, items)
        user_todo = self._changed(self.engine.profiles, users)
        plan.unchanged = len(items) - len(item_todo)
        plan.item_ids, plan.item_tags = [i for i, _, _ in item_todo], [h for _, _, h in item_todo]
        plan.user_ids, plan.user_tags = [u for u, _, _ in user_todo], [h for _, _, h in user_todo]
        texts = [text for _, text, _ in item_todo] + [text for _, text, _ in user_todo]
        if texts:
            vectors = self._encode(texts, len(item_todo))  # (n, dim) float32, L2-normalised
            n_items = len(item_todo)
            if item_todo:
                # (n_items, index dim): adapted by the trained model when there is one.
                plan.item_vectors = self.engine.item_vectors(vectors[:n_items], plan.item_ids)
            plan.user_vectors = vectors[n_items:]
        return plan

    def commit(self, plan: CatalogPlan) -> CatalogOutcome:
        """Apply a prepared batch to the index and profile store (idempotent: safe to retry)."""
        out = CatalogOutcome(dead=list(plan.dead), unchanged=plan.unchanged)
        out.removed = self.engine.index.remove_many(plan.drop_items)
        self.engine.profiles.remove_many(plan.drop_users)
        if plan.item_ids and plan.item_vectors is not None:
            self.engine.index.upsert_many(plan.item_ids, plan.item_vectors, plan.item_tags)
        if plan.user_ids and plan.user_vectors is not None:
            self.engine.profiles.upsert_many(plan.user_ids, plan.user_vectors, plan.user_tags)
        if plan.attrs:
            # Also for items whose text did not change: their attributes may have (a no-op
            # comparison when they did not).
            self.engine.index.set_attributes_many(list(plan.attrs), list(plan.attrs.values()))
        out.upserted = len(plan.item_ids)
        out.profiles = len(plan.user_ids)
        return out

    def _encode(self, texts: list[str], n_items: int) -> np.ndarray:
        """Item texts (the first ``n_items``) and then profile texts -> their vectors."""
        engine = self.engine
        # In the encoder child process when the worker has one; the same vectors either way.
        base = engine.catalog_encoder or engine.encoder
        tuned = engine.catalog_item_encoder or engine.item_encoder
        if tuned is None:
            return base.encode_many(texts)  # one call for items and profiles
        # A fine-tuned checkpoint: items through its tuned encoder, profiles through the base
        # one (training encoded user prompts with the frozen encoder).
        items = tuned.encode_many(texts[:n_items])
        return np.concatenate([items, base.encode_many(texts[n_items:])])

    def finish_replay(self) -> int:
        """End of the start-up replay: drop restored entries the topics no longer hold."""
        removed = 0
        if self._replayed_items is not None:
            stale = [i for i in self.engine.index.ids() if i not in self._replayed_items]
            removed += self.engine.index.remove_many(stale)
        if self._replayed_users is not None:
            stale = [u for u in self.engine.profiles.ids() if u not in self._replayed_users]
            self.engine.profiles.remove_many(stale)
        self._replayed_items = self._replayed_users = None
        return removed

    def _collect(
        self,
        rec: CatalogRecord,
        items: dict[str, str],
        attrs: dict[str, Mapping[str, Any]],
        users: dict[str, str],
        drop_items: set[str],
        drop_users: set[str],
    ) -> None:
        is_item = rec.topic == "items"
        if rec.value is None:
            # A tombstone in a compacted topic deletes the key.
            key = _key_text(rec.key)
            (drop_items if is_item else drop_users).add(key)
            (items if is_item else users).pop(key, None)
            if is_item:
                attrs.pop(key, None)
            return
        if is_item:
            item = decode_item(rec.value, self.limits)
            fields: dict[str, Any] = {
                "item_id": item.item_id,
                "title": item.title,
                "text": item.text,
            }
            self._track(self._replayed_items, item.item_id)
            if item.deleted:
                drop_items.add(item.item_id)
                items.pop(item.item_id, None)
                attrs.pop(item.item_id, None)
                return
            items[item.item_id] = self._render(self._item_prompt, fields, item.attributes)
            attrs[item.item_id] = item.attributes
            drop_items.discard(item.item_id)
        else:
            user = decode_user(rec.value, self.limits)
            self._track(self._replayed_users, user.user_id)
            fields = {"user_id": user.user_id, "profile": dict(user.attributes)}
            users[user.user_id] = self._render(self._user_prompt, fields, user.attributes)
            drop_users.discard(user.user_id)

    def _render(self, name: str, fields: dict[str, Any], attributes: Mapping[str, Any]) -> str:
        # The same rendering as offline training (promptrec.encoder.features).
        text = render_fields(self.engine.prompts, name, fields, attributes, self._max_chars)
        if not text.strip():
            raise InvalidEvent(ReasonCode.empty_text, f"prompt {name!r} rendered empty text")
        return text

    def _changed(self, store: Any, texts: dict[str, str]) -> list[tuple[str, str, str]]:
        todo = []
        for key, text in texts.items():
            tag = hashlib.sha256(f"{self._model_tag}\n{text}".encode()).hexdigest()[:24]
            if store.tag_of(key) != tag:
                todo.append((key, text, tag))
        return todo

    @staticmethod
    def _track(seen: set[str] | None, key: str) -> None:
        if seen is not None:
            seen.add(key)


def _key_text(key: bytes | None) -> str:
    if not key:
        raise InvalidEvent(ReasonCode.empty_value, "tombstone without a key")
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEvent(ReasonCode.bad_encoding, "record key is not UTF-8") from exc
