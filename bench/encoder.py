"""``promptrec bench encoder``: prompt-wrapped item texts per second, by batch size and device.

Texts are the generated catalog's items rendered with the worker's item prompt (the exact strings
the catalog agent encodes). Each (device, batch size) point encodes up to ``--texts`` texts or
stops after ``--max-seconds``, after one untimed warm-up batch. CPU always; CUDA in fp16 (and
fp32 for comparison) when torch sees a GPU.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from bench.common import print_table, write_json

__all__ = ["add_arguments", "item_texts", "run"]


def _ints(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"want positive integers, got {text!r}")
    return values


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``promptrec bench encoder``."""
    p.add_argument("--texts", type=int, default=20_000, help="texts per point (default 20000)")
    p.add_argument("--batch-sizes", type=_ints, default=[16, 32, 64, 128, 256],
                   help="CPU batch sizes (default 16,32,64,128,256)")  # fmt: skip
    p.add_argument("--cuda-batch-sizes", type=_ints, default=[64, 256, 512, 1024],
                   help="CUDA batch sizes (default 64,256,512,1024)")  # fmt: skip
    p.add_argument("--max-seconds", type=float, default=30.0,
                   help="stop a point after this many seconds (default 30)")  # fmt: skip
    p.add_argument("--devices", default="auto", help="auto (cpu + cuda if present), cpu or cuda")
    p.add_argument("--model-dir", type=Path, default=None, help="default: all-MiniLM-L6-v2")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    p.add_argument("--quantize", choices=["none", "int8", "both"], default="none",
                   help="CPU: exact float32, dynamic int8 linear layers, or both")  # fmt: skip
    p.add_argument("--out", type=Path, default=None, help="JSON result file")


def item_texts(n: int, seed: int = 11) -> list[str]:
    """``n`` generated items rendered with the default item prompt."""
    from bench.data import BenchData
    from promptrec.encoder import PromptTemplates
    from promptrec.encoder.settings import EncoderSettings

    settings = EncoderSettings()
    prompts = PromptTemplates.load(settings.prompts_file)
    out = []
    for item in BenchData(n, 1, seed=seed).items():
        attrs = item["attributes"]
        fields = {**attrs, "item_id": item["item_id"], "title": item["title"], "text": item["text"]}
        fields["attributes"] = dict(attrs)
        out.append(prompts.render(settings.item_prompt, fields, max_chars=settings.max_text_chars))
    return out


def _point(encoder: Any, texts: list[str], batch: int, max_seconds: float) -> dict[str, Any]:
    import torch

    encoder.encode_many(texts[:batch], batch_size=batch)  # warm-up: allocator, kernels
    done = 0
    t0 = time.perf_counter()
    while done < len(texts) and time.perf_counter() - t0 < max_seconds:
        chunk = texts[done : done + batch * 4]
        encoder.encode_many(chunk, batch_size=batch)
        done += len(chunk)
    if encoder.device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    return {
        "device": encoder.device,
        "dtype": encoder.dtype,
        "batch_size": batch,
        "texts": done,
        "seconds": seconds,
        "texts_per_s": done / seconds if seconds > 0 else 0.0,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole benchmark; prints a table and writes ``args.out``."""
    import torch

    from promptrec.encoder import TextEncoder

    texts = item_texts(args.texts)
    chars = sum(map(len, texts)) / max(len(texts), 1)
    devices = ["cpu", "cuda"] if args.devices == "auto" else [args.devices]
    if "cuda" in devices and not torch.cuda.is_available():
        devices.remove("cuda")
        print("CUDA not available: CPU only")
    points = []
    for device in devices:
        # CUDA: fp16, then fp32. CPU: float32 and/or dynamic int8.
        quant = {"none": ["none"], "int8": ["int8"], "both": ["none", "int8"]}[args.quantize]
        cuda = [(True, "none"), (False, "none")]
        variants = [(True, q) for q in quant] if device == "cpu" else cuda
        sizes = args.batch_sizes if device == "cpu" else args.cuda_batch_sizes
        for fp16, quantize in variants:
            encoder = TextEncoder(
                args.model_dir, device=device, fp16=fp16, torch_threads=args.threads,
                quantize=quantize,
            )  # fmt: skip
            tokens = encoder._tokenizer(texts[:500], truncation=True, max_length=encoder.max_length)
            mean_tokens = sum(map(len, tokens["input_ids"])) / len(tokens["input_ids"])
            for batch in sizes:
                point = _point(encoder, texts, batch, args.max_seconds)
                point["mean_tokens"] = mean_tokens
                points.append(point)
                print(f"  {device} {point['dtype']} batch {batch}: "
                      f"{point['texts_per_s']:.0f} texts/s")  # fmt: skip
            del encoder
    result = {
        "config": {"texts": args.texts, "max_seconds": args.max_seconds, "quantize": args.quantize},
        "mean_text_chars": chars,
        "example_text": texts[0],
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "points": points,
    }
    print_table(
        f"encoder (prompt-wrapped item texts, mean {chars:.0f} chars)",
        ["device", "dtype", "batch", "texts", "seconds", "texts/s", "mean tokens"],
        [[p["device"], p["dtype"], p["batch_size"], p["texts"], p["seconds"], p["texts_per_s"],
          p["mean_tokens"]] for p in points],
    )  # fmt: skip
    write_json(args.out, "encoder", result)
    return result
