"""``tools/convert_hf.py``: ``import`` an HF directory into a dist checkpoint, ``export`` one to HF."""

from __future__ import annotations

import argparse

from megatron_biomed.convert.exporter import export_hf
from megatron_biomed.convert.importer import import_hf
from megatron_biomed.convert.registry import ConversionError
from megatron_biomed.training.launch import run_main, setup_logging


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Hugging Face <-> megatron-biomed checkpoints (one process).")
    sub = p.add_subparsers(dest="command", required=True)
    i = sub.add_parser("import", help="HF directory (config.json + safetensors / .bin) -> dist checkpoint")
    i.add_argument("--hf-dir", required=True, help="directory written by save_pretrained")
    i.add_argument("--save", required=True, help="checkpoint directory to create (iter_0000000 inside)")
    i.add_argument("--preset", help="check config.json against this preset and keep its training choices")
    i.add_argument(
        "--tensor-model-parallel-size", type=int, default=1,
        help="the TP the checkpoint will be loaded at (sets the vocabulary padding); any PP / VPP loads it",
    )  # fmt: skip
    i.add_argument("--tokenizer", help="tokenizer directory (default: the tokenizer files in --hf-dir)")
    i.add_argument(
        "--extend-vocab", help="directory from tools/extend_vocab.py: add its tokens (rows = mean of their pieces)"
    )
    i.add_argument("--set", dest="overrides", action="append", default=[], help="section.field=value")
    e = sub.add_parser("export", help="dist checkpoint (any saved layout) -> HF directory")
    e.add_argument("--load", required=True, help="checkpoint directory (latest complete iteration) or iter_*")
    e.add_argument("--out", required=True, help="HF directory to write")
    e.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), help="default: the checkpoint's dtype")
    e.add_argument("--tokenizer", help="tokenizer directory to include (default: the run's data.tokenizer)")
    e.add_argument(
        "--weights", default="model",
        help="the weights to export: model, or ema (the moving average a run with optimizer.ema_decay saves)",
    )  # fmt: skip
    e.add_argument("--max-shard-size", default="5GB", help="largest safetensors shard, e.g. 5GB, 500MB")
    return p


def parse_size(text: str) -> int:
    """``5GB`` / ``500MB`` / ``1024`` -> bytes (powers of 1024)."""
    t = text.strip().upper()
    for unit, factor in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10), ("B", 1)):
        if t.endswith(unit):
            return int(float(t[: -len(unit)]) * factor)
    return int(t)


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    setup_logging(0)
    return run_main(lambda: convert(args))


def convert(args) -> int:
    try:
        if args.command == "import":
            path = import_hf(
                args.hf_dir,
                args.save,
                preset=args.preset,
                tensor_model_parallel_size=args.tensor_model_parallel_size,
                overrides=args.overrides,
                tokenizer=args.tokenizer,
                extend_vocab=args.extend_vocab,
            )
            print(f"imported {args.hf_dir} -> {path}")
        else:
            r = export_hf(
                args.load, args.out, dtype=args.dtype, tokenizer=args.tokenizer,
                max_shard_size=parse_size(args.max_shard_size), weights=args.weights,
            )  # fmt: skip
            print(f"exported {args.load} -> {r.out} ({len(r.files)} file(s), largest shard {r.largest_shard_bytes} B)")
    except FileNotFoundError as e:  # a file the directory should have (a shard its index names, a tokenizer file)
        raise ConversionError(str(e)) from e
    return 0
