"""``--dry-run`` of tools/pretrain.py and tools/finetune.py: what the run would do, checked against the layout
rules and sized by the planner, printed as JSON; no data read, no process group."""

from __future__ import annotations

import json
import os

from megatron_biomed.config.experiment import ExperimentConfig
from megatron_biomed.models.registry import count_parameters
from megatron_biomed.parallel.layout import data_parallel_size, validate_layout
from megatron_biomed.planning import estimate_memory, layout_from_config
from megatron_biomed.planning.hardware import GiB
from megatron_biomed.planning.terms import UnsupportedModel
from megatron_biomed.training.tasks import task_class


def plan(cfg: ExperimentConfig, world_size: int) -> dict:
    """What the run will do, checked against the layout rules."""
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


def task_plan(cfg: ExperimentConfig, world_size: int) -> dict:
    """:func:`plan` plus the schedule and the task: its options and what one sample puts through the model, as
    the task's class says from the config alone (no data is read)."""
    info = plan(cfg, world_size)
    info["task"] = cfg.task.name
    # The schedule and the task options, under their config field names, so a launcher's plan can be
    # checked against what it spells out (fine-tuning recipes compute warmup and steps from epochs).
    o = cfg.optimizer
    info.update(
        min_lr=o.min_lr, lr_warmup_iters=o.lr_warmup_iters, lr_decay_style=o.lr_decay_style,
        eval_interval=cfg.train.eval_interval, eval_iters=cfg.train.eval_iters,
        sequence_parallel=cfg.parallel.sequence_parallel,
        use_distributed_optimizer=cfg.parallel.use_distributed_optimizer,
        init_from=cfg.checkpoint.init_from,
    )  # fmt: skip
    task = task_class(cfg)
    options = task.plan_options(cfg)
    if options:
        info["task_options"] = options
        # What goes through the model per step: e.g. the options of a question (mc) or chosen + rejected (dpo)
        # per sample, each of the task's sequence length; None where the data decides.
        rows = task.planned_rows(cfg)
        seq = cfg.task.max_seq_length or cfg.model.seq_length
        info["sequences_per_sample"] = rows
        info["tokens_per_step"] = cfg.train.global_batch_size * rows * seq if rows else None
        info["train_tokens"] = info["tokens_per_step"] * cfg.train.train_iters if rows else None
    return info


def dry_run(cfg: ExperimentConfig, world_size: int | None = None) -> int:
    """Print the plan for ``world_size`` ranks (default: the launcher's WORLD_SIZE / SLURM_NTASKS, else 1)."""
    world = world_size or int(os.environ.get("WORLD_SIZE", os.environ.get("SLURM_NTASKS", "1")))
    print("plan: " + json.dumps(task_plan(cfg, world), indent=2))
    return 0
