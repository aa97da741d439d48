"""Exact float32 vs dynamic int8 encoder: speed, cosine to exact, text zero-shot NDCG@10.

``python -m bench.quantize --data ../shared/data/ml-100k [--format movielens-100k]``: encodes
the data set's prompt-wrapped item texts with both encoders (no cache, one after the other in the
same process and load), reports texts/s of each, the cosine of each int8 vector to its exact one,
and the test NDCG@10 / HR@10 of ``eval offline``'s text zero-shot baseline (recency decay chosen
on validation, as there) on each set of vectors.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]


def _encode(quantize: str, texts: list[str], threads: int) -> tuple[Any, float]:
    from promptrec.encoder import TextEncoder

    encoder = TextEncoder(device="cpu", torch_threads=threads, quantize=quantize)
    encoder.encode_many(texts[:64])  # warm-up
    t0 = time.perf_counter()
    vectors = encoder.encode_many(texts)  # (n, 384)
    return vectors, len(texts) / (time.perf_counter() - t0)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison; prints a JSON summary and writes ``--out``."""
    import numpy as np

    from promptrec.encoder import EncoderSettings, PromptTemplates
    from promptrec.evaluation.baselines import select_text_zero_shot
    from promptrec.evaluation.datasets import load_dataset
    from promptrec.evaluation.protocol import Split, evaluate
    from promptrec.evaluation.texts import item_texts

    p = argparse.ArgumentParser(prog="python -m bench.quantize")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--format", default="movielens-100k")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    settings = EncoderSettings()
    dataset = load_dataset(args.data, args.format)
    split = Split.from_dataset(dataset)
    prompts = PromptTemplates.load(settings.prompts_file)
    texts = item_texts(dataset, prompts, settings.item_prompt, settings.max_text_chars)
    rows = [i for i, t in enumerate(texts) if t.strip()]
    result: dict[str, Any] = {"data": str(args.data), "items": len(texts), "modes": {}}
    vectors = {}
    for mode in ("none", "int8"):
        vecs = np.zeros((len(texts), 384), dtype=np.float32)
        enc, speed = _encode(mode, [texts[i] for i in rows], args.threads)
        vecs[rows] = enc
        vectors[mode] = vecs
        scorer = select_text_zero_shot(split, vecs)
        test = evaluate(scorer, split, "test")
        result["modes"][mode] = {
            "texts_per_s": speed,
            "NDCG@10": test["NDCG@10"],
            "HR@10": test.get("HR@10"),
        }
        print(f"{mode}: {speed:.1f} texts/s, test NDCG@10 {test['NDCG@10']:.4f}", flush=True)
    cos = (vectors["none"][rows] * vectors["int8"][rows]).sum(axis=1)  # (n,) both unit rows
    result["cosine_int8_to_exact"] = {
        "mean": float(cos.mean()),
        "p1": float(np.percentile(cos, 1)),
        "min": float(cos.min()),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
