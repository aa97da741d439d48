"""The bodies of ``promptrec train`` and ``promptrec eval offline``.

Both load a data set, split it (leave-one-out), encode every item's prompt text once with the
frozen encoder (cached on disk), then train and/or evaluate. ``eval offline`` reports, on the same
split: ``promptrec`` (trained here or read from ``--checkpoint``), ``promptrec-id-only`` (the same
recipe without text), ``promptrec-text-zero-shot`` (frozen encoder, no training, history = mean
of item vectors), ``promptrec-zero-shot-prompt`` (frozen encoder, no training, history = a user
prompt naming the recent items' titles), ``promptrec-zero-shot-mixed`` (both summed, plus a
release-year freshness prior), ``promptrec-text-pop-prior`` (NOT zero-shot: vector mean plus the
training popularity), ``pop`` and ``itemknn``; optionally the strict
cold-start protocol. With ``fusion`` (the default) the trained model's score is fused with the
frozen text zero-shot score, the weight chosen on validation (:mod:`promptrec.evaluation.fusion`;
the checkpoint records it and the worker serves the fused score); ``promptrec-unfused`` is then
the same model without it.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from promptrec.encoder.features import encode_cached
from promptrec.encoder.finetune import EncoderTuner, FinetuneConfig
from promptrec.encoder.head import ScoringHead
from promptrec.encoder.head_checkpoint import attach_head
from promptrec.encoder.head_training import HeadTrainConfig
from promptrec.encoder.model import ModelConfig, RecModel, load_model, save_model
from promptrec.encoder.prompts import PromptTemplates
from promptrec.encoder.settings import EncoderSettings
from promptrec.encoder.text_encoder import TextEncoder
from promptrec.encoder.training import ModelScorer, TrainConfig, config_dict, train_model
from promptrec.encoder.tuned import tuned_text_encoder
from promptrec.evaluation.baselines import PopScorer, select_itemknn, select_text_zero_shot
from promptrec.evaluation.cold_start import cold_start_split, run_cold_start
from promptrec.evaluation.datasets import Dataset, load_dataset
from promptrec.evaluation.fusion import select_fusion
from promptrec.evaluation.head_stage import run_head_stage
from promptrec.evaluation.protocol import PROTOCOL, Split, metrics_from_ranks, stage_ranks
from promptrec.evaluation.report import format_table, intervals, uncertainty_report
from promptrec.evaluation.texts import item_texts, user_texts
from promptrec.evaluation.zero_shot import HistoryPromptScorer, select_history_prompt
from promptrec.evaluation.zero_shot_prior import mixed_ranks, pop_prior_ranks
from promptrec.index import IndexSettings
from promptrec.serving.settings import ServingSettings

__all__ = [
    "Prepared",
    "format_table",
    "prepare",
    "run_eval_offline",
    "run_train",
    "write_json",
]

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """A loaded, split and encoded data set."""

    dataset: Dataset
    split: Split
    text: np.ndarray  # (n_items, text_dim) frozen item text vectors, unit rows
    profiles: np.ndarray | None  # (n_users, text_dim) encoded user prompts (zero rows: none)
    encoder: TextEncoder
    settings: EncoderSettings
    cache_dir: Path | None = None  # text-vector cache (user prompts of the zero-shot method)
    item_texts: list[str] = field(default_factory=list)  # prompt text per item (encoder tuning)


def prepare(
    data: Path,
    fmt: str,
    settings: EncoderSettings,
    cache_dir: Path | None,
    *,
    profiles: bool = False,
    progress: bool = True,
    encoder: TextEncoder | None = None,
    skip_users: int = 0,
    strict: bool = False,
) -> Prepared:
    """Load, split and encode (see the module docstring).

    ``skip_users`` drops the first N users (by first interaction), so that ``eval stream
    --users N`` can replay users the model never saw. ``strict`` makes the first bad data row an
    error instead of a counted skip.
    """
    dataset = load_dataset(data, fmt, strict=strict)
    if skip_users:
        dataset = dataset.without_users(set(dataset.first_users(skip_users)))
    log.info("%s", dataset.summary())
    split = Split.from_dataset(dataset)
    encoder = encoder or TextEncoder.from_settings(settings)
    prompts = PromptTemplates.load(settings.prompts_file)
    texts = item_texts(dataset, prompts, settings.item_prompt, settings.max_text_chars)
    text = encode_cached(encoder, texts, cache_dir, progress)
    prof = None
    if profiles:
        utexts = user_texts(
            split.user_ids, dataset, prompts, settings.user_prompt, settings.max_text_chars
        )
        prof = encode_cached(encoder, utexts, cache_dir, progress)
    return Prepared(dataset, split, text, prof, encoder, settings, cache_dir, item_texts=texts)


def model_config(prep: Prepared, base: ModelConfig) -> ModelConfig:
    """``base`` with the input widths and encoder identity of ``prep``."""
    return replace(
        base,
        text_dim=prep.text.shape[1] if base.text_dim else 0,
        profile_dim=prep.text.shape[1] if prep.profiles is not None else 0,
        item_prompt=prep.settings.item_prompt,
        user_prompt=prep.settings.user_prompt,
        encoder_model=prep.encoder.model_dir.name,
        encoder_max_length=prep.encoder.max_length,
    )


def _scorer(prep: Prepared, model: RecModel, text: np.ndarray | None = None) -> ModelScorer:
    text = prep.text if text is None else text
    return ModelScorer(model, text, prep.split.item_ids, prep.profiles)


def make_tuner(
    prep: Prepared, finetune: FinetuneConfig | None, train: TrainConfig
) -> EncoderTuner | None:
    """A fresh encoder tuner for one training run (None: the encoder stays frozen)."""
    if finetune is None or finetune.mode == "none":
        return None
    return EncoderTuner(prep.encoder, prep.item_texts, finetune, train.device, train.seed)


def checkpoint_text(prep: Prepared, model: RecModel) -> np.ndarray:
    """Item text vectors a checkpoint scores with: its tuned encoder's, else the frozen ones."""
    encoder = tuned_text_encoder(model, prep.encoder)
    if encoder is None:
        return prep.text
    return encode_cached(encoder, prep.item_texts, None, progress=False)


def run_train(
    prep: Prepared,
    out: Path,
    base: ModelConfig,
    train: TrainConfig,
    head: HeadTrainConfig | None = None,
    fusion: bool = True,
    finetune: FinetuneConfig | None = None,
) -> dict[str, Any]:
    """Trains, writes ``out`` (safetensors) and ``out.json``; returns the JSON summary.

    With ``fusion`` the text fusion is chosen on validation and recorded in the checkpoint
    (``fusion`` in the summary). With ``head``, the scoring head is then trained as the
    ranking stage over the retrieved (fused, when fusion is on) candidates
    (:mod:`promptrec.evaluation.head_stage`); when it beats plain cosine on validation it is
    written into ``out``, and the summary's ``head`` entry reports both. With ``finetune`` the
    encoder is tuned jointly and its changed tensors go into ``out``; the fusion's text part
    then uses the tuned encoder's vectors too.
    """
    config = model_config(prep, base)
    tuner = make_tuner(prep, finetune, train)
    result = train_model(prep.split, prep.text, config, train, prep.profiles, tuner)
    text = prep.text if result.text is None else result.text
    chosen = _fuse(prep.split, text, prep.profiles, result.model, fusion)
    ranks = stage_ranks(_scorer(prep, result.model, text), prep.split, "test")
    test = metrics_from_ranks(ranks)
    summary = {
        "dataset": prep.dataset.name,
        "format": prep.dataset.format,
        "protocol": PROTOCOL,
        **config_dict(config, train),
        **result.summary(),
        **({"fusion": chosen} if chosen else {}),
        "test": test,
        "test_intervals": intervals(ranks),
    }
    trained_head = None
    if head is not None:
        trained_head, summary["head"] = _head_stage(prep, result.model, head, text)
    save_model(out, result.model, summary)
    if trained_head is not None:
        attach_head(out, trained_head, {"valid": summary["head"]["valid"]["head"]})
    return summary


def _head_stage(
    prep: Prepared, model: RecModel, config: HeadTrainConfig, text: np.ndarray
) -> tuple[ScoringHead | None, dict[str, Any]]:
    """The head stage with the worker's retrieval settings (``PROMPTREC_*`` environment).

    ``text`` is ``(n_items, text_dim)``: the item text vectors the model scores with (the tuned
    encoder's after ``--finetune-encoder``).
    """
    serving = ServingSettings()
    return run_head_stage(
        model,
        text,
        prep.split,
        prep.profiles,
        config,
        prep.settings.head_hidden,
        prep.settings.learning_rate,
        serving.candidates,
        IndexSettings(),
    )


def run_eval_offline(
    prep: Prepared,
    base: ModelConfig,
    train: TrainConfig,
    checkpoint: Path | None = None,
    cold_start: float | None = None,
    fusion: bool = True,
    finetune: FinetuneConfig | None = None,
) -> dict[str, Any]:
    """All methods on the test targets of one split; returns the results.json document.

    Besides the metrics, the document holds 95 % bootstrap intervals over users
    (``intervals``), paired tests of ``promptrec`` against every other method (``paired``),
    for the methods trained here what training did (``training``), the validation grids of the
    history-prompt zero-shot method (``zero_shot_prompt``), of the mixed zero-shot method
    (``zero_shot_mixed``) and of the text + Pop prior (``text_pop_prior``) and, with
    ``cold_start`` (the time cut quantile), the strict cold-start protocol (``cold_start``; it
    trains its own model on the pre-cut data, even with ``checkpoint``).
    """
    split = prep.split
    # Built first: a data set without cold test events fails before any training.
    cold = cold_start_split(prep.dataset, cold_start) if cold_start is not None else None
    ranks: dict[str, np.ndarray] = {}
    training: dict[str, dict[str, Any]] = {}
    fused: dict[str, Any] = {}

    def timed(name: str, fn: Any) -> None:
        t0 = time.perf_counter()
        ranks[name] = fn()
        log.info("%s: %.1f s", name, time.perf_counter() - t0)

    if checkpoint is not None:
        model = load_model(checkpoint)
        check_compatible(model.config, prep)
        text = checkpoint_text(prep, model)
        timed("promptrec", lambda: stage_ranks(_scorer(prep, model, text), split, "test"))
        if model.fusion is not None:
            kept, model.fusion = model.fusion, None
            timed(
                "promptrec-unfused",
                lambda: stage_ranks(_scorer(prep, model, text), split, "test"),
            )
            model.fusion = kept
    else:
        config = model_config(prep, base)
        timed(
            "promptrec",
            lambda: _train_ranks(
                prep,
                config,
                train,
                training,
                "promptrec",
                fusion=fusion,
                tuner=make_tuner(prep, finetune, train),
            ),
        )
        if "unfused" in training["promptrec"]:
            ranks["promptrec-unfused"] = training["promptrec"].pop("unfused")
            fused = training["promptrec"]["fusion"]
    id_only = replace(model_config(prep, base), text_dim=0, use_ids=True, profile_dim=0)
    timed(
        "promptrec-id-only",
        lambda: _train_ranks(prep, id_only, train, training, "promptrec-id-only", False),
    )
    vector = select_text_zero_shot(split, prep.text)
    timed("promptrec-text-zero-shot", lambda: stage_ranks(vector, split, "test"))
    zero_shot: dict[str, Any] = {}
    prompt = _zero_shot_prompt(prep, zero_shot)
    timed(
        "promptrec-zero-shot-prompt",
        lambda: stage_ranks(prompt, split, "test", batch_size=4096),
    )
    priors: dict[str, Any] = {}  # validation grids of the two rows built on the text scorers
    timed(
        "promptrec-zero-shot-mixed",
        lambda: mixed_ranks(prep.dataset, split, vector, prompt, priors),
    )
    timed("promptrec-text-pop-prior", lambda: pop_prior_ranks(split, vector, priors))
    timed("pop", lambda: stage_ranks(PopScorer(split), split, "test"))
    timed("itemknn", lambda: stage_ranks(select_itemknn(split), split, "test"))
    order = [
        "promptrec",
        *(["promptrec-unfused"] if "promptrec-unfused" in ranks else []),
        "pop",
        "itemknn",
        "promptrec-id-only",
        "promptrec-text-zero-shot",
        "promptrec-zero-shot-prompt",
        "promptrec-zero-shot-mixed",
        "promptrec-text-pop-prior",
    ]
    document = {
        "dataset": prep.dataset.name,
        "protocol": PROTOCOL,
        **uncertainty_report({name: ranks[name] for name in order}, "promptrec"),
        "training": training,
        "zero_shot_prompt": zero_shot,
        **priors,
    }
    if fused:
        document["fusion"] = fused
    if cold is not None:
        t0 = time.perf_counter()
        config = model_config(prep, base)
        document["cold_start"] = run_cold_start(
            cold,
            prep.text,
            prep.profiles,
            config,
            train,
            fusion=fusion,
            tuner=make_tuner(prep, finetune, train),
        )
        log.info("cold start: %.1f s", time.perf_counter() - t0)
    return document


def _zero_shot_prompt(prep: Prepared, out: dict[str, Any]) -> HistoryPromptScorer:
    """The history-prompt zero-shot scorer chosen on validation; its grid goes to ``out``."""
    prompts = PromptTemplates.load(prep.settings.prompts_file)
    titles = [item.title for item in prep.dataset.items]
    profiles = [prep.dataset.users.get(user) for user in prep.split.user_ids]
    scorer, grid = select_history_prompt(
        prep.split, prep.encoder, prompts, prep.text, titles, profiles, prep.cache_dir
    )
    out.update(
        {
            "template": scorer.template,
            "template_text": prompts.template(scorer.template),
            "recent": scorer.recent,
            "valid_ndcg10_grid": grid,
        }
    )
    return scorer


def _train_ranks(
    prep: Prepared,
    config: ModelConfig,
    train: TrainConfig,
    training: dict[str, dict[str, Any]],
    name: str,
    profiles: bool = True,
    fusion: bool = False,
    tuner: EncoderTuner | None = None,
) -> np.ndarray:
    """Trains ``config``, records its summary under ``training[name]``, returns test ranks.

    With ``fusion`` (and a text path) the fusion is chosen on validation; its record goes to
    ``training[name]["fusion"]`` and the unfused model's test ranks to
    ``training[name]["unfused"]`` (the caller moves them out).
    """
    prof = prep.profiles if profiles else None
    result = train_model(prep.split, prep.text, config, train, prof, tuner)
    training[name] = result.summary()
    text = prep.text if result.text is None else result.text
    chosen = _fuse(prep.split, text, prof, result.model, fusion)
    if chosen:
        training[name]["fusion"] = chosen
        if result.model.fusion is not None:
            kept, result.model.fusion = result.model.fusion, None
            plain = ModelScorer(result.model, text, prep.split.item_ids, prof)
            training[name]["unfused"] = stage_ranks(plain, prep.split, "test")
            result.model.fusion = kept
    scorer = ModelScorer(result.model, text, prep.split.item_ids, prof)
    return stage_ranks(scorer, prep.split, "test")


def _fuse(
    split: Split,
    text: np.ndarray,
    profiles: np.ndarray | None,
    model: RecModel,
    fusion: bool,
) -> dict[str, Any]:
    """Chooses the fusion of ``model`` on validation (nothing without text or ``fusion``)."""
    if not fusion or not model.config.text_dim:
        return {}
    chosen = select_fusion(model, split, text, profiles)
    log.info(
        "fusion: alpha %s (valid NDCG@10 %.4f; trained only %.4f, text only %.4f)",
        chosen["alpha"],
        chosen["valid_ndcg10"],
        chosen["valid_ndcg10_trained_only"],
        chosen["valid_ndcg10_text_only"],
    )
    return chosen


def check_compatible(config: ModelConfig, prep: Prepared) -> None:
    """Raises CheckpointError when a model was trained on another encoder or text width."""
    from promptrec.encoder.exceptions import CheckpointError

    if config.text_dim and config.text_dim != prep.text.shape[1]:
        raise CheckpointError(
            f"checkpoint expects {config.text_dim}-d text vectors, encoder gives "
            f"{prep.text.shape[1]}"
        )
    if config.encoder_model and config.encoder_model != prep.encoder.model_dir.name:
        raise CheckpointError(
            f"checkpoint was trained with encoder {config.encoder_model!r}, "
            f"not {prep.encoder.model_dir.name!r}"
        )
    if config.profile_dim and prep.profiles is None:
        raise CheckpointError("checkpoint fuses user profiles; rerun with --user-profile")


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Writes ``document`` as indented JSON (folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
