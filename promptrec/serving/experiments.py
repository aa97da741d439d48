"""A/B experiments: arms with their own prompts or checkpoint, and a stable user -> arm assignment.

The configuration is one JSON file (``PROMPTREC_EXPERIMENTS_FILE``)::

    {"experiment": "prompt-test-1",
     "arms": [{"name": "control", "weight": 50},
              {"name": "short-prompt", "weight": 50, "item_prompt": "item_short",
               "user_prompt": "user", "checkpoint": null}]}

An arm field left out takes the worker's default (``PROMPTREC_ENCODER_ITEM_PROMPT``,
``..._USER_PROMPT``, ``..._CHECKPOINT``); ``"checkpoint": null`` means no checkpoint (frozen text
vectors). A relative checkpoint path is read from the experiments file's folder. Without a file
there is one arm, ``default``, with the worker's settings: serving is exactly as without
experiments.

Assignment: ``blake2b(experiment + "\\0" + user_id)`` gives a bucket in ``[0, 10000)``; the arms
own consecutive bucket ranges in file order, each ``weight * 100`` buckets wide (weights are
percentages with at most two decimals and must sum to 100; a weight may be 0). A user therefore
keeps an arm on every worker and across restarts, and a changed weight moves only the users
whose bucket lies between an old and a new range boundary: 50/50 -> 60/40 moves exactly the
10% in buckets ``[5000, 6000)``, from the second arm to the first, the minimum any assignment
can move. Boundaries between arms whose weights did not change stay put, so rebalance arms that
are neighbours in the file (or set a retired arm's weight to 0 rather than deleting it: deleting
shifts every later range). Renaming the experiment reshuffles everyone, on purpose.

Items are indexed once per distinct :class:`IndexKey` ``(item_prompt, checkpoint)``, not once
per arm: arms that differ only in the user prompt share an index (:meth:`Experiments.index_keys`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptrec.encoder import PromptTemplates
from promptrec.encoder.settings import EncoderSettings
from promptrec.serving.settings import ServingSettings

__all__ = [
    "BUCKETS",
    "Arm",
    "ExperimentError",
    "Experiments",
    "IndexKey",
    "bucket_of",
    "extra_index_bytes",
]

BUCKETS = 10_000
# Python-side bookkeeping per indexed item (id string, id -> row dict, version tag, row/label
# maps, attribute pairs of a few low-cardinality attributes), measured by bench/features.py.
_BOOKKEEPING_BYTES = 600
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_TOP_KEYS = {"experiment", "arms"}
_ARM_KEYS = {"name", "weight", "item_prompt", "user_prompt", "checkpoint"}


class ExperimentError(ValueError):
    """An experiments file that cannot be used; the message names the problem."""


@dataclass(frozen=True)
class IndexKey:
    """What an item index depends on: the item template and the checkpoint (None: none)."""

    item_prompt: str
    checkpoint: Path | None


@dataclass(frozen=True)
class Arm:
    """One arm, with every field resolved, and its bucket range ``[start, end)``."""

    name: str
    weight: float
    item_prompt: str
    user_prompt: str
    checkpoint: Path | None
    start: int
    end: int

    @property
    def index_key(self) -> IndexKey:
        """The item index this arm reads."""
        return IndexKey(self.item_prompt, self.checkpoint)


def bucket_of(experiment: str, user_id: str) -> int:
    """The user's bucket in ``[0, BUCKETS)``: stable across processes (not Python's ``hash``)."""
    digest = hashlib.blake2b(f"{experiment}\0{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


@dataclass(frozen=True)
class Experiments:
    """The experiment name and its arms, in bucket order."""

    name: str
    arms: tuple[Arm, ...]

    @classmethod
    def single(cls, item_prompt: str, user_prompt: str, checkpoint: Path | None) -> Experiments:
        """No experiment: one arm ``default`` with the worker's settings, every bucket."""
        arm = Arm("default", 100.0, item_prompt, user_prompt, checkpoint, 0, BUCKETS)
        return cls("default", (arm,))

    @classmethod
    def load(
        cls,
        path: Path | None,
        prompts: PromptTemplates,
        item_prompt: str,
        user_prompt: str,
        checkpoint: Path | None,
    ) -> Experiments:
        """Read and check an experiments file (None: :meth:`single`).

        Args:
            path: The JSON file, or None.
            prompts: The worker's templates; arm template names must be among them.
            item_prompt: The worker's default item template.
            user_prompt: The worker's default user template.
            checkpoint: The worker's default checkpoint (None: none).

        Raises:
            ExperimentError: The file is missing or not JSON, has unknown keys, bad or duplicate
                names, weights that are negative, finer than 0.01 or do not sum to 100, an
                unknown template name or a checkpoint file that does not exist.
        """
        if path is None:
            return cls.single(item_prompt, user_prompt, checkpoint)
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ExperimentError(f"experiments file {path}: cannot read JSON: {exc}") from None
        where = f"experiments file {path}"
        if not isinstance(data, dict):
            raise ExperimentError(f"{where}: must be a JSON object")
        _no_unknown(data, _TOP_KEYS, where)
        name = _name(data.get("experiment"), f"{where}: experiment")
        arms = data.get("arms")
        if not isinstance(arms, list) or not arms:
            raise ExperimentError(f"{where}: arms must be a non-empty list")
        defaults = {"item_prompt": item_prompt, "user_prompt": user_prompt}
        parsed = [
            _arm(raw, i, where, prompts, defaults, checkpoint, path.parent)
            for i, raw in enumerate(arms)
        ]
        seen: set[str] = set()
        for arm_name, *_ in parsed:
            if arm_name in seen:
                raise ExperimentError(f"{where}: duplicate arm name {arm_name!r}")
            seen.add(arm_name)
        total = sum(units for _, units, _ in parsed)
        if total != BUCKETS:
            raise ExperimentError(
                f"{where}: weights must sum to 100, got {total / 100:g} "
                f"({', '.join(f'{n}={u / 100:g}' for n, u, _ in parsed)})"
            )
        out, start = [], 0
        for arm_name, units, fields in parsed:
            out.append(Arm(arm_name, units / 100, start=start, end=start + units, **fields))
            start += units
        return cls(name, tuple(out))

    @classmethod
    def from_settings(
        cls, serving: ServingSettings, encoder: EncoderSettings, prompts: PromptTemplates
    ) -> Experiments:
        """``PROMPTREC_EXPERIMENTS_FILE`` with the encoder settings as defaults (worker start)."""
        return cls.load(
            serving.experiments_file,
            prompts,
            encoder.item_prompt,
            encoder.user_prompt,
            encoder.checkpoint,
        )

    def bucket(self, user_id: str) -> int:
        """The user's bucket in this experiment."""
        return bucket_of(self.name, user_id)

    def assign(self, user_id: str) -> Arm:
        """The user's arm."""
        b = self.bucket(user_id)
        for arm in self.arms:
            if arm.start <= b < arm.end:
                return arm
        raise AssertionError(f"bucket {b} outside every arm")  # ranges cover [0, BUCKETS)

    def assign_many(self, user_ids: Sequence[str]) -> list[Arm]:
        """The arm of each user (one hash each; a micro-batch costs microseconds)."""
        if len(self.arms) == 1:
            return [self.arms[0]] * len(user_ids)
        return [self.assign(u) for u in user_ids]

    def arm(self, name: str) -> Arm:
        """The arm called ``name`` (KeyError if none)."""
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise KeyError(name)

    def index_keys(self) -> dict[str, IndexKey]:
        """Arm name -> the index it reads; equal keys mean one shared index."""
        return {arm.name: arm.index_key for arm in self.arms}

    def indexes(self) -> list[IndexKey]:
        """The distinct item indexes to build, in arm order (the first is the default's)."""
        return list(dict.fromkeys(arm.index_key for arm in self.arms))

    def user_prompts(self) -> list[str]:
        """The distinct user templates (one encoded-profile store each)."""
        return list(dict.fromkeys(arm.user_prompt for arm in self.arms))

    @property
    def active(self) -> bool:
        """Whether there is more than the single default arm (answers then carry the arm)."""
        return not (len(self.arms) == 1 and self.arms[0].name == "default")


def _no_unknown(data: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ExperimentError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )


def _name(value: object, where: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ExperimentError(
            f"{where} must be 1-64 letters, digits, '_', '.' or '-' (not starting with a "
            f"symbol), got {value!r}"
        )
    return value


def _arm(
    raw: object,
    i: int,
    where: str,
    prompts: PromptTemplates,
    defaults: dict[str, str],
    checkpoint: Path | None,
    base: Path,
) -> tuple[str, int, dict[str, Any]]:
    """``(name, bucket units, resolved fields)`` of arm ``i``."""
    if not isinstance(raw, dict):
        raise ExperimentError(f"{where}: arms[{i}] must be an object")
    _no_unknown(raw, _ARM_KEYS, f"{where}: arms[{i}]")
    name = _name(raw.get("name"), f"{where}: arms[{i}].name")
    here = f"{where}: arm {name!r}"
    weight = raw.get("weight")
    if isinstance(weight, bool) or not isinstance(weight, int | float):
        raise ExperimentError(f"{here}: weight must be a number (percent), got {weight!r}")
    units = round(weight * 100)
    if not 0 <= weight <= 100 or abs(units - weight * 100) > 1e-6:
        raise ExperimentError(
            f"{here}: weight must be a percentage in [0, 100] with at most 2 decimals, "
            f"got {weight!r}"
        )
    fields: dict[str, Any] = {}
    for key in ("item_prompt", "user_prompt"):
        value = raw.get(key, defaults[key])
        if not isinstance(value, str) or value not in prompts.names:
            raise ExperimentError(
                f"{here}: unknown {key} template {value!r}; known: {', '.join(prompts.names)}"
            )
        fields[key] = value
    if "checkpoint" not in raw:
        fields["checkpoint"] = checkpoint
    elif raw["checkpoint"] is None:
        fields["checkpoint"] = None
    elif isinstance(raw["checkpoint"], str) and raw["checkpoint"].strip():
        path = Path(raw["checkpoint"])
        path = path if path.is_absolute() else base / path
        if not path.is_file():
            raise ExperimentError(f"{here}: checkpoint file {path} does not exist")
        fields["checkpoint"] = path
    else:
        raise ExperimentError(f"{here}: checkpoint must be a path or null")
    return name, units, fields


def extra_index_bytes(
    items: int, dim: int, kind: str = "flat", hnsw_m: int = 32, head_params: int = 0
) -> int:
    """Estimated memory of one more item index (one more :class:`IndexKey`).

    Per item: the float32 vector (``4 * dim``; HNSW holds a second copy plus ``2 * M`` int32
    level-0 links and about one upper-level link), plus the bookkeeping; plus the arm's
    scoring head (parameters and their two Adam moments, float32). The storage matrix grows by
    1.5x, so up to a third more right after a growth step.
    """
    per_item = 4 * dim + _BOOKKEEPING_BYTES
    if kind == "hnsw":
        # Second vector copy, 2M level-0 links, ~1 upper-level link, offset (8) + level (4).
        per_item += 4 * dim + 4 * 2 * hnsw_m + 4 + 12
    return items * per_item + 3 * 4 * head_params
