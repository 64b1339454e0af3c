"""Checks of a parallel layout against the model and the world size, before any work starts."""

from __future__ import annotations

from megatron_biomed.config.experiment import ExperimentConfig


class LayoutError(ValueError):
    """The requested parallel layout cannot work; the message lists every broken rule."""


def data_parallel_size(cfg: ExperimentConfig, world_size: int) -> int:
    p = cfg.parallel
    return world_size // (p.tensor_model_parallel_size * p.pipeline_model_parallel_size)


def layout_problems(cfg: ExperimentConfig, world_size: int) -> list[str]:
    """Every rule the layout breaks, spelled out (empty when it is valid)."""
    m, p, t = cfg.model, cfg.parallel, cfg.train
    tp, pp, vpp = p.tensor_model_parallel_size, p.pipeline_model_parallel_size, p.virtual_pipeline_model_parallel_size
    problems = []
    if tp < 1 or pp < 1:
        problems.append(f"tensor_model_parallel_size ({tp}) and pipeline_model_parallel_size ({pp}) must be >= 1")
        return problems
    if world_size % (tp * pp) != 0:
        problems.append(
            f"world size {world_size} must equal TP x PP x DP: {world_size} is not divisible by "
            f"TP ({tp}) x PP ({pp}) = {tp * pp}"
        )
    if m.num_attention_heads % tp:
        problems.append(f"TP ({tp}) must divide num_attention_heads ({m.num_attention_heads})")
    if m.num_query_groups is not None:
        if m.num_attention_heads % m.num_query_groups:
            problems.append(
                f"num_query_groups ({m.num_query_groups}) must divide num_attention_heads ({m.num_attention_heads})"
            )
        if m.num_query_groups % tp:
            problems.append(f"TP ({tp}) must divide num_query_groups ({m.num_query_groups}, the KV heads)")
    if m.hidden_size % m.num_attention_heads:
        problems.append(f"num_attention_heads ({m.num_attention_heads}) must divide hidden_size ({m.hidden_size})")
    if m.ffn_size % tp:
        problems.append(f"TP ({tp}) must divide ffn_hidden_size ({m.ffn_size})")
    chunks = pp * (vpp or 1)
    if m.num_layers % chunks:
        what = f"PP ({pp}) x virtual PP ({vpp})" if vpp else f"PP ({pp})"
        problems.append(f"{what} = {chunks} must divide num_layers ({m.num_layers})")
    if vpp is not None:
        if pp < 2:
            problems.append(f"virtual_pipeline_model_parallel_size ({vpp}) needs pipeline_model_parallel_size >= 2")
        if p.batch_p2p_comm:
            problems.append(
                "batch_p2p_comm=True with virtual pipeline parallelism gives wrong losses on gloo "
                "(measured: microbatches 3-4 off, gradient error ~28); set parallel.batch_p2p_comm=false"
            )
    if p.sequence_parallel and m.kernels == "torch":
        problems.append(
            "sequence_parallel needs model.kernels=csrc (PyTorch fallback on CPU) or te: megatron-core's "
            "torch norm (model.kernels=torch) does not support it"
        )
    if p.sequence_parallel and tp == 1:
        problems.append("sequence_parallel needs tensor_model_parallel_size > 1")
    if p.sequence_parallel and m.seq_length % tp:
        problems.append(f"sequence_parallel: TP ({tp}) must divide seq_length ({m.seq_length})")
    padded = m.padded_vocab_size(tp)
    if padded % (tp * 128) and m.make_vocab_size_divisible_by % 128 == 0:
        problems.append(f"padded vocabulary {padded} is not a multiple of TP x 128 = {tp * 128}")
    dp = world_size // (tp * pp) if world_size % (tp * pp) == 0 else None
    if dp:
        per_step = t.micro_batch_size * dp
        if t.global_batch_size % per_step:
            problems.append(
                f"global_batch_size ({t.global_batch_size}) must be a multiple of micro_batch_size "
                f"({t.micro_batch_size}) x DP ({dp}) = {per_step}"
            )
        elif vpp is not None and (t.global_batch_size // per_step) % pp:
            problems.append(
                f"interleaved pipeline: the number of microbatches ({t.global_batch_size // per_step}) "
                f"must be a multiple of PP ({pp})"
            )
    if p.use_distributed_optimizer and cfg.checkpoint.dist_optimizer_format != "fully_reshardable":
        problems.append(
            "checkpoint.dist_optimizer_format must be 'fully_reshardable' with the distributed optimizer "
            f"(got {cfg.checkpoint.dist_optimizer_format!r}; the other formats fail or resume with a wrong step "
            "on gloo)"
        )
    return problems


def validate_layout(cfg: ExperimentConfig, world_size: int) -> None:
    """Raise LayoutError naming every broken rule."""
    problems = layout_problems(cfg, world_size)
    if problems:
        raise LayoutError("invalid parallel layout:\n  - " + "\n  - ".join(problems))
