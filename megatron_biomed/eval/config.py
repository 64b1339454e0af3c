"""The config of an evaluation run, from the checkpoint it scores: the model and tokenizer it recorded (and, for a
fine-tuned head, its task), this run's layout and batch (``--set``). Shared by ``tools/evaluate.py`` and its
``--suite`` runs, so a suite entry is scored under the very config its single-task run would use."""

from __future__ import annotations

from megatron_biomed.config.experiment import ConfigError, ExperimentConfig
from megatron_biomed.config.loading import apply_mapping, apply_overrides
from megatron_biomed.inference.generate import SamplingConfig
from megatron_biomed.parallel.env import DistEnv
from megatron_biomed.parallel.layout import data_parallel_size
from megatron_biomed.training.launch import validate_run_config

# Items per micro-batch of evaluation unless --set train.micro_batch_size says otherwise.
EVAL_MICRO_BATCH = 4


def checkpoint_eval_config(recorded: dict, source: str, overrides: list[str], head: str | None = None,
                           test_file: str | None = None, fmt: str | None = None) -> ExperimentConfig:  # fmt: skip
    """``recorded``: the checkpoint's run config (``source`` names it in errors). With ``head``: the fine-tune's
    task too, reading only ``test_file`` (in ``fmt``, default the fine-tune's task.format)."""
    cfg = ExperimentConfig()
    inherited = {"model": recorded.get("model", {}), "data": {"tokenizer": recorded.get("data", {}).get("tokenizer")}}
    if head:
        inherited["task"] = dict(recorded.get("task", {}))
    apply_mapping(cfg, inherited, source)
    cfg.train.micro_batch_size = EVAL_MICRO_BATCH
    cfg.train.global_batch_size = 0  # 0: micro_batch_size x DP, set once the world size is known
    apply_overrides(cfg, overrides)
    if head:
        if cfg.task.name != head:
            raise ConfigError(f"{source} was fine-tuned as task {cfg.task.name!r}, not {head!r}")
        if not test_file:
            raise ConfigError("--head needs --test-file")
        # Only the test file: not the fine-tune's other training files (task.train_files). Its input format
        # (task.input_format, task.truncation) stays the fine-tune's, so a head trained on MedMCQA + MedQA
        # scores MMLU items laid out as it was trained (--format mmlu).
        cfg.task.train_file, cfg.task.valid_file, cfg.task.train_files = str(test_file), None, []
        cfg.task.format = fmt or cfg.task.format
    return validate_run_config(cfg)


def global_batch_from_world(cfg: ExperimentConfig, env: DistEnv) -> None:
    """train.global_batch_size 0 becomes micro_batch_size x DP (one micro-batch per rank per step)."""
    if not cfg.train.global_batch_size:
        cfg.train.global_batch_size = cfg.train.micro_batch_size * max(1, data_parallel_size(cfg, env.world_size))


def generation_sampling(args, task) -> SamplingConfig:
    """The decoding of a generation task: its own greedy length unless --max-new-tokens, --temperature,
    --top-k, --top-p, --seed or --num-beams say otherwise (megatron_biomed/inference/generate.py SamplingConfig)."""
    new = task.max_new_tokens if args.max_new_tokens is None else args.max_new_tokens
    return SamplingConfig(new, args.temperature, args.top_k, args.top_p, args.seed, num_beams=args.num_beams)
