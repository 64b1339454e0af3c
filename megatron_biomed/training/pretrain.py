"""Pretraining entry point shared by tools/pretrain.py and the launchers: config -> parallel -> Trainer."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from megatron_biomed.config.experiment import ConfigError, ExperimentConfig, load_config
from megatron_biomed.data.gpt_dataset import DataError, TokenInfo
from megatron_biomed.parallel.layout import LayoutError, data_parallel_size, validate_layout

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
    """Vocabulary size and end-of-document id from the tokenizer directory (or the model for mock data)."""
    if cfg.data.tokenizer:
        from megatron_biomed.tokenizer import load_tokenizer

        try:
            tok = load_tokenizer(cfg.data.tokenizer)
        except (OSError, ValueError) as e:  # no tokenizer files there, or no <|endoftext|> token
            raise DataError(f"data.tokenizer: {e}") from e
        if tok.vocab_size > cfg.model.vocab_size:
            raise DataError(
                f"data.tokenizer={cfg.data.tokenizer} has {tok.vocab_size} tokens but model.vocab_size is "
                f"{cfg.model.vocab_size}; raise model.vocab_size"
            )
        return TokenInfo(vocab_size=tok.vocab_size, eod=tok.eod_id)
    if cfg.data.mock:
        return TokenInfo(vocab_size=cfg.model.vocab_size, eod=cfg.model.vocab_size - 1)
    raise DataError("set data.tokenizer (an HF tokenizer directory) or data.mock=true")


def plan(cfg: ExperimentConfig, world_size: int) -> dict:
    """What the run will do, checked against the layout rules."""
    from megatron_biomed.config.param_count import count_parameters
    from megatron_biomed.planning import estimate_memory, layout_from_config
    from megatron_biomed.planning.hardware import GiB
    from megatron_biomed.planning.terms import UnsupportedModel

    validate_layout(cfg, world_size)
    t, p = cfg.train, cfg.parallel
    dp = data_parallel_size(cfg, world_size)
    tokens_per_step = t.global_batch_size * cfg.model.seq_length
    # The planner's memory per GPU of this layout (GPU-independent; tools/plan.py adds step time, days and
    # the fit on a named GPU, and searches other layouts).
    memory = None
    try:
        memory = estimate_memory(
            cfg.model, layout_from_config(cfg, world_size), global_batch_size=t.global_batch_size,
            precision=t.precision, grad_reduce_dtype=p.grad_reduce_dtype,
        )  # fmt: skip
    except UnsupportedModel:
        pass  # a family the planner has no terms for: the dry run reports no memory
    return {
        "name": cfg.name,
        "world_size": world_size,
        "tensor_model_parallel_size": p.tensor_model_parallel_size,
        "pipeline_model_parallel_size": p.pipeline_model_parallel_size,
        "virtual_pipeline_model_parallel_size": p.virtual_pipeline_model_parallel_size,
        "data_parallel_size": dp,
        "micro_batch_size": t.micro_batch_size,
        "global_batch_size": t.global_batch_size,
        "num_microbatches": t.global_batch_size // (t.micro_batch_size * dp),
        "seq_length": cfg.model.seq_length,
        "tokens_per_step": tokens_per_step,
        "train_iters": t.train_iters,
        "train_tokens": tokens_per_step * t.train_iters,
        "parameters": count_parameters(cfg.model).total,
        "model": {
            "family": cfg.model.family,
            "num_layers": cfg.model.num_layers,
            "hidden_size": cfg.model.hidden_size,
            "num_attention_heads": cfg.model.num_attention_heads,
            "num_query_groups": cfg.model.num_query_groups,
            "ffn_hidden_size": cfg.model.ffn_size,
            "vocab_size": cfg.model.vocab_size,
            "padded_vocab_size": cfg.model.padded_vocab_size(p.tensor_model_parallel_size),
            "position_embedding_type": cfg.model.position_embedding_type,
            "normalization": cfg.model.normalization,
            "activation": cfg.model.activation,
        },
        "data": {"blend": cfg.data.blend, "split": cfg.data.split, "tokenizer": cfg.data.tokenizer},
        "precision": t.precision,
        "optimizer": cfg.optimizer.name,
        "lr": cfg.optimizer.lr,
        "weight_decay": cfg.optimizer.weight_decay,
        "memory_per_gpu_gib": {
            **{k: round(v / GiB, 3) for k, v in memory.terms.items()},
            "total": round(memory.total / GiB, 3),
            "pipeline_stage": memory.stage,
        }
        if memory
        else None,
    }


# megatron-core notices that say nothing about this run (deprecations of APIs we do not choose).
_KNOWN_NOTICES = ("GPTModel IS DEPRECATED", "async save is deprecated")


def _drop_known_notices(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not any(n in message for n in _KNOWN_NOTICES)


def setup_logging(rank: int, verbose: bool = False) -> None:
    """Our progress lines on rank 0; megatron-core's own INFO chatter only with MEGATRON_BIOMED_VERBOSE=1."""
    import warnings

    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format=f"[%(asctime)s rank{rank}] %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stdout,
        force=True,
    )
    verbose = verbose or os.environ.get("MEGATRON_BIOMED_VERBOSE") == "1"
    if not verbose:
        logging.getLogger("megatron").setLevel(logging.WARNING)
        for handler in logging.getLogger().handlers:
            handler.addFilter(_drop_known_notices)
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
        for module in ("megatron", "torch", "transformer_engine"):
            warnings.filterwarnings("ignore", module=module)


def main(argv=None) -> int:
    args = build_arg_parser().parse_args(argv)
    try:
        cfg = load_config(args.preset, args.config, args.overrides)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return launch(cfg, dry_run=args.dry_run, world_size=args.world_size)


def launch(cfg: ExperimentConfig, dry_run: bool = False, world_size: int | None = None) -> int:
    """Check everything that can be checked before work starts (layout, tokenizer, the task's data), then
    train (or, with ``dry_run``, print the plan). Shared by tools/pretrain.py and tools/finetune.py."""
    from megatron_biomed.finetune.data import TaskSetupError
    from megatron_biomed.finetune.prompts import PromptError
    from megatron_biomed.training.tasks import build_task

    if dry_run:
        world = world_size or int(os.environ.get("WORLD_SIZE", os.environ.get("SLURM_NTASKS", "1")))
        try:
            info = plan(cfg, world)
        except LayoutError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        info["task"] = cfg.task.name
        # The schedule and the task options, under their config field names, so a launcher's plan can be
        # checked against what it spells out (fine-tuning recipes compute warmup and steps from epochs).
        o, tk = cfg.optimizer, cfg.task
        info.update(
            min_lr=o.min_lr, lr_warmup_iters=o.lr_warmup_iters, lr_decay_style=o.lr_decay_style,
            eval_interval=cfg.train.eval_interval, eval_iters=cfg.train.eval_iters,
            sequence_parallel=cfg.parallel.sequence_parallel,
            use_distributed_optimizer=cfg.parallel.use_distributed_optimizer,
            init_from=cfg.checkpoint.init_from,
        )  # fmt: skip
        if tk.name != "pretrain":
            info["task_options"] = {
                "format": tk.format, "max_seq_length": tk.max_seq_length or cfg.model.seq_length,
                "prompt_template": tk.prompt_template, "chat_template": tk.chat_template, "pack": tk.pack,
                "medmcqa_cop_base": tk.medmcqa_cop_base, "dpo_beta": tk.dpo_beta, "dpo_sft_weight": tk.dpo_sft_weight,
            }  # fmt: skip
            # What goes through the model per step: options (mc) or chosen + rejected (dpo) per sample, each of
            # the task's sequence length; for mc without task.num_choices the data decides (None here).
            rows = {"mc": tk.num_choices or None, "dpo": 2}.get(tk.name, 1)
            seq = tk.max_seq_length or cfg.model.seq_length
            info["sequences_per_sample"] = rows
            info["tokens_per_step"] = cfg.train.global_batch_size * rows * seq if rows else None
            info["train_tokens"] = info["tokens_per_step"] * cfg.train.train_iters if rows else None
        print("plan: " + json.dumps(info, indent=2))
        return 0

    from megatron_biomed.parallel.env import LaunchEnvError, read_dist_env

    try:
        env = read_dist_env()
        setup_logging(env.rank)
        validate_layout(cfg, env.world_size)
        tokens = token_info(cfg)
        task = build_task(cfg, tokens)
    except (LayoutError, DataError, LaunchEnvError, ConfigError, TaskSetupError, PromptError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return run(cfg, env, tokens, task)


def run(cfg: ExperimentConfig, env, tokens: TokenInfo, task=None) -> int:
    from megatron_biomed.parallel.initialize import initialize_parallel, shutdown_parallel
    from megatron_biomed.training.loop import Trainer, TrainingStopped

    ctx = initialize_parallel(cfg, env)
    if env.rank == 0:
        log.info("parallel layout: %s", ctx.describe())
        restarts = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)
        if restarts:  # torchrun's agent restarted every rank after one failed (its log above names which)
            log.warning(
                "restarted by torchrun (restart %d of at most %s) after a rank failed: resuming from the newest "
                "complete checkpoint of checkpoint.load (%s)",
                restarts, os.environ.get("TORCHELASTIC_MAX_RESTARTS", "?"), cfg.checkpoint.load,
            )  # fmt: skip
        if task is not None:
            log.info("task: %s", task.describe())
    from megatron_biomed.checkpoint import CheckpointError

    try:
        trainer = Trainer(cfg, ctx, tokens, task)
        summary = trainer.train()
    except TrainingStopped as e:
        log.error("training stopped: %s", e)
        shutdown_parallel()
        return 1
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        shutdown_parallel()
        return 2
    if env.rank == 0:
        if "val_loss" in summary:
            if task is None or task.reports_perplexity:
                log.info("final validation loss %.6f | final perplexity %.4f", summary["val_loss"], summary["val_ppl"])
            extra = {k: v for k, v in summary["val_metrics"].items() if k not in ("ppl",)}
            if len(extra) > 1 or (task is not None and not task.reports_perplexity):
                log.info("final validation metrics: %s", " | ".join(f"{k} {v:.4f}" for k, v in extra.items()))
        if summary.get("preempted"):
            log.info("stopped for preemption at iteration %d; resume with checkpoint.load", summary["iteration"])
    shutdown_parallel()
    return 0
