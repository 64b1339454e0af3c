"""Pretraining entry point shared by tools/pretrain.py and the launchers: config -> checks -> parallel -> Trainer.

tools/finetune.py runs the same :func:`launch` with a fine-tuning task (training/tasks.py names them all)."""

from __future__ import annotations

import argparse
import logging
import os

from megatron_biomed.config.experiment import ExperimentConfig
from megatron_biomed.data.errors import DataError
from megatron_biomed.data.gpt_dataset import TokenInfo
from megatron_biomed.parallel.env import DistEnv
from megatron_biomed.tokenizer import load_run_tokenizer
from megatron_biomed.training.dry_run import dry_run
from megatron_biomed.training.launch import load_run_config, parallel_session, run_main, start
from megatron_biomed.training.loop import Trainer, TrainingStopped
from megatron_biomed.training.signals import clear_preempted_marker, write_preempted_marker
from megatron_biomed.training.task import Task
from megatron_biomed.training.tasks import build_task

log = logging.getLogger("megatron_biomed")


def build_arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Pretrain a GPT on megatron-core (torchrun / SLURM / single process).")
    p.add_argument("--preset", help="named preset, e.g. biomedlm-2.7b, biollm-70b, tiny-biomedlm")
    p.add_argument("--config", help="YAML file of overrides (may name its own 'preset:')")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override one field, e.g. --set model.num_layers=4 (repeatable)",
    )
    p.add_argument("--world-size", type=int, default=None, help="with --dry-run: plan for this many ranks")
    p.add_argument("--dry-run", action="store_true", help="print the plan (layout, steps, tokens) and exit")
    return p


def token_info(cfg: ExperimentConfig) -> TokenInfo:
    """Vocabulary size and end-of-document id from the run's tokenizer (or the model for mock data)."""
    if cfg.data.tokenizer:
        tok = load_run_tokenizer(cfg)  # TokenizerError when it is unreadable or larger than the model's vocabulary
        return TokenInfo(vocab_size=tok.vocab_size, eod=tok.eod_id)
    if cfg.data.mock:
        return TokenInfo(vocab_size=cfg.model.vocab_size, eod=cfg.model.vocab_size - 1)
    raise DataError("set data.tokenizer (an HF tokenizer directory) or data.mock=true")


def main(argv=None) -> int:
    args = build_arg_parser().parse_args(argv)
    return run_main(
        lambda: launch(load_run_config(args.preset, args.config, args.overrides), args.dry_run, args.world_size)
    )


def launch(cfg: ExperimentConfig, dry_run_only: bool = False, world_size: int | None = None) -> int:
    """Check everything that can be checked before work starts (layout, tokenizer, the task's data), then
    train (or, with ``dry_run_only``, print the plan). Shared by tools/pretrain.py and tools/finetune.py; raises
    BiomedError subclasses for what the user must fix (run_main prints them)."""
    if dry_run_only:
        return dry_run(cfg, world_size)
    env = start(cfg)
    tokens = token_info(cfg)
    task = build_task(cfg, tokens)
    with parallel_session(cfg, env) as ctx:
        return train(cfg, ctx, env, tokens, task)


def train(cfg: ExperimentConfig, ctx, env: DistEnv, tokens: TokenInfo, task: Task) -> int:
    """Run the Trainer to the end; 1 when training had to stop (too many non-finite losses, no data)."""
    if env.rank == 0:
        log.info("parallel layout: %s", ctx.describe())
        restarts = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)
        if restarts:  # torchrun's agent restarted every rank after one failed (its log above names which)
            log.warning(
                "restarted by torchrun (restart %d of at most %s) after a rank failed: resuming from the newest "
                "complete checkpoint of checkpoint.load (%s)",
                restarts, os.environ.get("TORCHELASTIC_MAX_RESTARTS", "?"), cfg.checkpoint.load,
            )  # fmt: skip
        log.info("task: %s", task.describe())
    if env.rank == 0 and cfg.checkpoint.save:
        clear_preempted_marker(cfg.checkpoint.save)  # a marker from an earlier, preempted job of this run
    try:
        summary = Trainer(cfg, ctx, tokens, task).train()
    except TrainingStopped as e:
        log.error("training stopped: %s", e)
        return 1
    if env.rank == 0:
        if "val_loss" in summary:
            if task.reports_perplexity:
                log.info("final validation loss %.6f | final perplexity %.4f", summary["val_loss"], summary["val_ppl"])
            extra = {k: v for k, v in summary["val_metrics"].items() if k not in ("ppl",)}
            if len(extra) > 1 or not task.reports_perplexity:
                log.info("final validation metrics: %s", " | ".join(f"{k} {v:.4f}" for k, v in extra.items()))
        if summary.get("preempted"):
            log.info("stopped for preemption at iteration %d; resume with checkpoint.load", summary["iteration"])
            if cfg.checkpoint.save and summary["iteration"] < cfg.train.train_iters:  # else: nothing to resume
                marker = write_preempted_marker(cfg.checkpoint.save, summary["iteration"], summary["preempt_signal"])
                log.info("preemption marker: %s", marker)
    return 0
