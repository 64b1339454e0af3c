"""Peak memory (RSS) of HF conversion, against transformers' own load + save of the same model.

Each step runs in a fresh process that reports its own peak RSS (``ru_maxrss``):

  (0) baseline: the libraries imported and a process group started (what every step pays anyway);
  (a) import:   tools/convert_hf.py's import_hf, streaming: the model built on the meta device, each tensor
                outside the layers alone and then one layer at a time read, converted and written
                (expected: baseline + about twice the largest of those -- the HF copy and the padded
                embedding, or a layer and its fused QKV / fc1 -- independent of the depth);
  (b) export:   export_hf, streaming one layer at a time into shards of ``--shard-mb``
                (expected: baseline + a few layers -- torch.distributed.checkpoint's reader copies each chunk
                it reads once more -- + one shard; independent of the depth, not the model size);
  (c) hf:       transformers' AutoModelForCausalLM.from_pretrained + save_pretrained (the model, at least).

The model is a random LlamaForCausalLM (GQA, SwiGLU, untied) written by ``save_pretrained`` in fp32
(safetensors shards, or ``pytorch_model-*.bin`` shards with ``--hf-format bin``); the default shape (~0.66B
parameters, 2.6 GB) fits a 24 GiB CPU machine with room for every step; run it at two ``--layers`` to see the
import's and export's peaks stay put while the model grows. The run fails (exit 1) when the import
peaks above baseline + ``--max-over`` x the largest conversion group (the padded embedding or one
layer, whichever is larger): what streaming promises.

    python benchmarks/convert_memory.py [--hidden 2048 --layers 12 --ffn 5504 --vocab 32000 --shard-mb 256]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _peak_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _as_bin_shards(hf: Path) -> None:
    """Rewrite save_pretrained's safetensors shards as the pickled ``pytorch_model-*.bin`` shards and
    ``pytorch_model.bin.index.json`` of transformers 4's ``safe_serialization=False`` (transformers 5 writes
    safetensors only), shard for shard."""
    import torch
    from safetensors.torch import load_file

    index = hf / "model.safetensors.index.json"
    files = (
        sorted({*json.loads(index.read_text())["weight_map"].values()}) if index.is_file() else ["model.safetensors"]
    )
    weight_map = {}
    for i, name in enumerate(files):
        shard = load_file(str(hf / name))
        bin_name = f"pytorch_model-{i + 1:05d}-of-{len(files):05d}.bin"
        torch.save(shard, hf / bin_name)
        weight_map.update(dict.fromkeys(shard, bin_name))
        (hf / name).unlink()
        del shard
    index.unlink(missing_ok=True)
    (hf / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def _step(name: str, work: Path, a: dict) -> dict:
    import torch

    t0 = time.perf_counter()
    extra = {}
    if name == "make":
        from transformers import LlamaConfig, LlamaForCausalLM

        cfg = LlamaConfig(
            vocab_size=a["vocab"], hidden_size=a["hidden"], intermediate_size=a["ffn"], num_hidden_layers=a["layers"],
            num_attention_heads=a["heads"], num_key_value_heads=a["kv_heads"], max_position_embeddings=256,
            tie_word_embeddings=False,
        )  # fmt: skip
        with torch.device("meta"):
            model = LlamaForCausalLM(cfg)
        model.to_empty(device="cpu")
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0, 0.02)
        model.save_pretrained(work / "hf", max_shard_size=f"{a['shard_mb']}MB")
        if a["hf_format"] == "bin":
            _as_bin_shards(work / "hf")
        extra["params"] = sum(p.numel() for p in model.parameters())
    elif name == "baseline":
        from megatron_biomed.config import ExperimentConfig
        from megatron_biomed.parallel.initialize import single_process_config

        single_process_config(ExperimentConfig())
    elif name == "import":
        from megatron_biomed.convert.importer import import_hf

        import_hf(work / "hf", work / "ckpt")
    elif name == "export":
        from megatron_biomed.convert.exporter import export_hf

        r = export_hf(work / "ckpt", work / "out", max_shard_size=a["shard_mb"] * 2**20)
        extra["largest_shard_mib"] = r.largest_shard_bytes / 2**20
        extra["total_mib"] = r.total_bytes / 2**20
    elif name == "hf":
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(work / "hf", dtype=torch.float32)
        model.save_pretrained(work / "hf_again", max_shard_size=f"{a['shard_mb']}MB")
    return {"step": name, "peak_rss_mib": _peak_mib(), "seconds": time.perf_counter() - t0, **extra}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--hidden", type=int, default=2048)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--kv-heads", type=int, default=4)
    p.add_argument("--ffn", type=int, default=5504)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--shard-mb", type=int, default=256)
    p.add_argument("--hf-format", choices=("safetensors", "bin"), default="safetensors", help="what import reads")
    p.add_argument("--max-over", type=float, default=3.0, help="allowed peak over baseline, in largest groups")
    p.add_argument("--workdir", help="default: a temporary directory (removed afterwards)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    names = ("hidden", "layers", "heads", "kv_heads", "ffn", "vocab", "shard_mb", "hf_format")
    a = {k: getattr(args, k) for k in names}
    if args.child:
        print("RESULT " + json.dumps(_step(args.child, Path(args.workdir), a)), flush=True)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        rows = []
        for step in ("make", "baseline", "import", "export", "hf"):
            cmd = [sys.executable, __file__, "--child", step, "--workdir", str(work)]
            cmd += [f"--{k.replace('_', '-')}={v}" for k, v in a.items()]
            env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=work)
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            if proc.returncode != 0 or line is None:
                print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
                return 1
            rows.append(json.loads(line[len("RESULT ") :]))
    params = rows[0]["params"]
    model_mib = params * 4 / 2**20
    print(
        f"model: LlamaForCausalLM {params / 1e9:.2f}B parameters, {model_mib:.0f} MiB fp32; "
        f"shards <= {args.shard_mb} MB ({args.hf_format})"
    )
    layer_mib = (a["hidden"] ** 2 * (2 + 2 * a["kv_heads"] / a["heads"]) + 3 * a["hidden"] * a["ffn"]) * 4 / 2**20
    padded_vocab = -(-a["vocab"] // 128) * 128
    embedding_mib = padded_vocab * a["hidden"] * 4 / 2**20
    group_mib = max(layer_mib, embedding_mib)
    print(f"one layer: {layer_mib:.0f} MiB; padded embedding: {embedding_mib:.0f} MiB")
    print(f"{'step':10} {'peak RSS MiB':>13} {'over baseline':>14} {'seconds':>8}")
    base = rows[1]["peak_rss_mib"]
    for r in rows[1:]:
        print(f"{r['step']:10} {r['peak_rss_mib']:13.0f} {r['peak_rss_mib'] - base:14.0f} {r['seconds']:8.1f}")
    imported, export = rows[2], rows[3]
    print(
        f"import peak over baseline / model size = {(imported['peak_rss_mib'] - base) / model_mib:.2f}, "
        f"/ largest group = {(imported['peak_rss_mib'] - base) / group_mib:.2f}"
    )
    print(
        f"export peak over baseline / model size = {(export['peak_rss_mib'] - base) / model_mib:.2f}; "
        f"largest shard written {export['largest_shard_mib']:.0f} MiB"
    )
    failed = [
        f"{r['step']} peaks {r['peak_rss_mib'] - base:.0f} MiB over baseline > {args.max_over} x {group_mib:.0f} MiB"
        for r in (imported,)  # the export's bound is its shard size plus a few layers (see above)
        if r["peak_rss_mib"] - base > args.max_over * group_mib
    ]
    for line in failed:
        print("FAIL: " + line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
