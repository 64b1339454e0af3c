"""Build a fine-tuning task and its model in this process (one rank) and evaluate its loss function."""

from __future__ import annotations

from megatron_biomed.config.loading import load_config


def task_config(toy: dict, task: str, *sets: str, preset: str = "tiny-biomedlm"):
    data = {
        "sft": [f"task.train_file={toy['sft']}", "task.format=sft"],
        "dpo": [f"task.train_file={toy['pref']}", "task.format=preference"],
        "mc": [f"task.train_file={toy['mc_train']}", "task.format=medqa"],
    }[task]
    return load_config(
        preset,
        overrides=[f"task.name={task}", f"data.tokenizer={toy['tok']}", "task.max_seq_length=32", *data, *sets],
    )


def build(cfg):
    """(task, model chunk) with fresh weights from the config's seed."""
    from megatron_biomed.models.common import transformer_config
    from megatron_biomed.parallel import cpu
    from megatron_biomed.training.tasks import build_task

    task = build_task(cfg, None)
    tconfig = transformer_config(cfg)
    task.configure(tconfig)
    cpu.model_parallel_manual_seed(cfg.train.seed)
    model = task.build_model(cfg, tconfig)[0]
    return task, model


def loss_of(task, model, batch: dict):
    """The task's loss function applied to one micro-batch: (summed loss, count, metrics)."""
    output, loss_func = task.forward_step(iter([batch]), model)
    return loss_func(output)
