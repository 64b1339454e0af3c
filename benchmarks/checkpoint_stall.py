"""Training-time stall of a checkpoint save: synchronous (the baseline) against checkpoint.async_save.

One process, one thread, our Trainer on mock data, a GPT larger than the tiny presets (default ~58M
parameters: 12 layers, hidden 512, vocabulary 32,768; a checkpoint of ~0.7 GB with the Adam states). For each
variant the script times ``window`` training steps that start with a save (the save call itself, the steps,
the step-boundary polls and, for the async save, waiting for it to be finalised at the end of the window) and
subtracts ``window`` times the median step time measured without saves. That difference is the stall: what
the save cost the training run, including the background writer competing for the cores.

    OMP_NUM_THREADS=1 python benchmarks/checkpoint_stall.py [--hidden 512 --layers 12 --window 6]

The rounds alternate sync and async so that a busy neighbour on a shared machine slows both alike; the
table shows the median over rounds.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--vocab", type=int, default=32768)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--window", type=int, default=6, help="steps timed after each save")
    p.add_argument("--baseline-steps", type=int, default=6)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--dir", default=None, help="where checkpoints are written (default: a temporary directory)")
    return p.parse_args(argv)


def build_trainer(args, save_dir: Path):
    from megatron_biomed.config.loading import load_config
    from megatron_biomed.parallel.env import find_free_port, read_dist_env
    from megatron_biomed.parallel.initialize import initialize_parallel
    from megatron_biomed.training.launch import setup_logging
    from megatron_biomed.training.loop import Trainer
    from megatron_biomed.training.pretrain import token_info

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(find_free_port()))
    overrides = [
        f"model.hidden_size={args.hidden}",
        f"model.num_layers={args.layers}",
        f"model.num_attention_heads={args.heads}",
        f"model.ffn_hidden_size={4 * args.hidden}",
        f"model.vocab_size={args.vocab}",
        f"model.seq_length={args.seq}",
        "data.mock=true",
        "train.micro_batch_size=1",
        "train.global_batch_size=1",
        "train.train_iters=100000",
        "train.eval_iters=0",
        f"checkpoint.save={save_dir}",
        "logging.log_interval=1000000",
    ]
    cfg = load_config("tiny-biomedlm", overrides=overrides)
    env = read_dist_env()
    setup_logging(env.rank)
    import logging

    logging.getLogger("megatron_biomed").setLevel(logging.WARNING)
    ctx = initialize_parallel(cfg, env)
    return cfg, Trainer(cfg, ctx, token_info(cfg))


def main(argv=None) -> int:
    args = parse_args(argv)
    save_dir = Path(args.dir or tempfile.mkdtemp(prefix="ckpt_stall_"))
    cfg, trainer = build_trainer(args, save_dir)
    params = sum(p.numel() for m in trainer.model for p in m.parameters())
    data = trainer._iterators(trainer.train_ds, 0)
    it = 0

    def step() -> float:
        nonlocal it
        it += 1
        start = time.perf_counter()
        trainer.train_step(data, it)
        trainer.state.iteration = it
        return time.perf_counter() - start

    for _ in range(2):  # warm-up
        step()
    results: dict[str, list] = {"sync": [], "async": []}
    size = 0
    base_all = []
    for _round in range(args.rounds):
        base = statistics.median(step() for _ in range(args.baseline_steps))
        base_all.append(base)
        for variant in ("sync", "async"):
            cfg.checkpoint.async_save = variant == "async"
            start = time.perf_counter()
            trainer.save()
            blocking = time.perf_counter() - start
            for _ in range(args.window):
                step()
                trainer.poll_saves()
            trainer.finish_saves()
            window = time.perf_counter() - start
            results[variant].append((blocking, window - args.window * base))
            saved = save_dir / f"iter_{it - args.window:07d}"
            size = sum(f.stat().st_size for f in saved.rglob("*") if f.is_file())
            shutil.rmtree(saved, ignore_errors=True)
    base = statistics.median(base_all)
    shutil.rmtree(save_dir, ignore_errors=True)
    print(
        f"\nmodel: {params / 1e6:.1f}M parameters ({args.layers} layers, hidden {args.hidden}, vocab {args.vocab}), "
        f"seq {args.seq}, 1 sequence per step, fp32 + Adam; median step {base:.3f} s; "
        f"checkpoint {size / 2**20:.0f} MiB; rounds {args.rounds}, "
        f"window {args.window} steps"
    )
    print(f"{'variant':<42} {'in save() [s]':>14} {'stall [s]':>10} {'vs baseline':>12}")
    sync_stall = statistics.median(s for _, s in results["sync"])
    for variant, name in (("sync", "sync save (baseline)"), ("async", "checkpoint.async_save=true")):
        blocking = statistics.median(b for b, _ in results[variant])
        stall = statistics.median(s for _, s in results[variant])
        print(f"{name:<42} {blocking:>14.2f} {stall:>10.2f} {stall / sync_stall:>11.2f}x")
    from megatron_biomed.parallel.initialize import shutdown_parallel

    shutdown_parallel()
    return 0


if __name__ == "__main__":
    sys.exit(main())
