"""The GPU check's training steps: a ~110M and a ~1.3B GPT per ``model.kernels`` choice through tools/pretrain.py,
tokens/s, MFU and peak memory from the project's metrics file. Run by benchmarks/gpu_check.py."""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from gpu_check_common import ROOT, Skip
from gpu_check_kernels import require_cuda

GPT_SIZES = {
    "110m": {"num_layers": 12, "hidden_size": 768, "num_attention_heads": 12, "seq_length": 1024, "mbs": 8,
             "iters": 30},
    "1.3b": {"num_layers": 24, "hidden_size": 2048, "num_attention_heads": 16, "seq_length": 2048, "mbs": 4,
             "iters": 20},
}  # fmt: skip
GPT_VOCAB = 28896  # BioMedLM's


def train_argv(size: str, kernels: str, out_dir: Path, peak_tflops: float | None, iters: int | None = None) -> list:
    """tools/pretrain.py's command line for one training run (BioMedLM's family at ``size``, bf16, mock data)."""
    sz = GPT_SIZES[size]
    sets = {
        "model.num_layers": sz["num_layers"],
        "model.hidden_size": sz["hidden_size"],
        "model.num_attention_heads": sz["num_attention_heads"],
        "model.seq_length": sz["seq_length"],
        "model.vocab_size": GPT_VOCAB,
        "model.kernels": kernels,
        "train.micro_batch_size": sz["mbs"],
        "train.global_batch_size": sz["mbs"],
        "train.train_iters": iters or sz["iters"],
        "train.eval_interval": 0,
        "train.eval_iters": 0,
        "train.precision": "bf16",
        "optimizer.lr_warmup_iters": 2,
        "data.mock": "true",
        "logging.log_interval": 5,
        "logging.metrics_file": str(out_dir / "metrics.jsonl"),
    }
    if peak_tflops:
        sets["logging.peak_flops_per_rank"] = f"{peak_tflops * 1e12:.6g}"
    argv = [sys.executable, str(ROOT / "tools" / "pretrain.py"), "--preset", "biomedlm-2.7b"]
    for k, v in sets.items():
        argv += ["--set", f"{k}={v}"]
    return argv


def summarize_metrics(lines: list[dict], warmup: int) -> dict:
    """Median tokens/s, step time, MFU of the steps after ``warmup`` (the project's metrics file), and the peak
    memory when the loop reports it (any key naming memory)."""
    train = [r for r in lines if r.get("kind") == "train"]
    steady = [r for r in train if r.get("iteration", 0) > warmup] or train
    if not steady:
        raise RuntimeError("the metrics file has no training steps")

    def med(key):
        vals = [r[key] for r in steady if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
        return statistics.median(vals) if vals else None

    memory = {k: max(r[k] for r in train if isinstance(r.get(k), (int, float)))
              for k in sorted({k for r in train for k in r if "mem" in k})}  # fmt: skip
    return {
        "steps": len(train),
        "steps_measured": len(steady),
        "tokens_per_s": med("tokens_per_s"),
        "step_time_s": med("step_time_s"),
        "tflops_per_rank": med("tflops_per_rank"),
        "mfu": med("mfu"),
        "memory": memory,
        "final_loss": train[-1].get("loss"),
    }


def _poll_gpu_memory(stop: threading.Event, peak: list) -> None:
    """Largest ``nvidia-smi`` memory.used (MiB) while a run goes on: the peak when the metrics lack it."""
    while not stop.wait(0.5):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=5, check=False).stdout  # fmt: skip
            peak[0] = max(peak[0], int(out.split()[0]))
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            pass


def make_train_step(size: str, kernels: str) -> Callable[[dict], dict]:
    def step(ctx: dict) -> dict:
        from megatron_biomed.kernels.registry import KERNEL_PROVIDERS, provider_class

        if kernels not in KERNEL_PROVIDERS:
            raise Skip(f"unknown choice: model.kernels={kernels!r} is not one of {KERNEL_PROVIDERS.names()}")
        require_cuda()
        why = provider_class(kernels).unavailable_reason()
        if why:
            raise Skip(f"model.kernels={kernels} cannot run here: {why}")
        peak = (ctx.get("results", {}).get("gemm_peak") or {}).get("tflops")
        run_dir = Path(ctx["step_dir"])
        argv = train_argv(size, kernels, run_dir, peak)
        (run_dir / "metrics.jsonl").unlink(missing_ok=True)
        stop, mem = threading.Event(), [0]
        poller = threading.Thread(target=_poll_gpu_memory, args=(stop, mem), daemon=True)
        poller.start()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        t0 = time.perf_counter()
        proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - t0
        stop.set()
        (run_dir / "pretrain.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            raise RuntimeError(f"tools/pretrain.py exited {proc.returncode}:\n{(proc.stdout + proc.stderr)[-3000:]}")
        lines = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines() if ln.strip()]
        result = summarize_metrics(lines, warmup=max(3, GPT_SIZES[size]["iters"] // 4))
        if result["mfu"] is None and peak and result["tflops_per_rank"]:
            result["mfu"] = result["tflops_per_rank"] / peak
        sz = GPT_SIZES[size]
        result.update(size=size, kernels=kernels, seconds=seconds, peak_tflops=peak,
                      peak_memory_gib_nvidia_smi=round(mem[0] / 1024, 2) if mem[0] else None,
                      config={k: v for k, v in sz.items()}, command=" ".join(argv[1:]))  # fmt: skip
        return result

    return step
