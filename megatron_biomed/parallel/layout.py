"""Checks of a parallel layout against the model and the world size, before any work starts."""

from __future__ import annotations

from megatron_biomed.config.experiment import ExperimentConfig
from megatron_biomed.config.parallel import GRAD_REDUCE_DTYPES
from megatron_biomed.config.training import RECOMPUTE_GRANULARITIES, RECOMPUTE_METHODS
from megatron_biomed.errors import BiomedError
from megatron_biomed.kernels.registry import KERNEL_PROVIDERS, provider_class
from megatron_biomed.models.registry import FAMILIES, get_family


class LayoutError(BiomedError, ValueError):
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
    if p.sequence_parallel and not _kernels_support_sequence_parallel(m.kernels):
        problems.append(
            "sequence_parallel needs model.kernels=auto, csrc (PyTorch fallback on CPU), sdpa or te: "
            "megatron-core's torch norm (model.kernels=torch) does not support it"
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
    problems += memory_knob_problems(cfg)
    problems += family_layout_problems(cfg, world_size)
    return problems


def _kernels_support_sequence_parallel(kernels: str) -> bool:
    """Whether the ``model.kernels`` provider's norms support sequence parallelism (asked only when it is on)."""
    if kernels not in KERNEL_PROVIDERS:
        return True  # config validation names the unknown choice
    return provider_class(kernels).supports_sequence_parallel


def family_layout_problems(cfg: ExperimentConfig, world_size: int) -> list[str]:
    """The rules of ``model.family`` itself (models/registry.py ``ModelFamily.layout_problems``)."""
    if cfg.model.family not in FAMILIES:
        return []  # config validation names the unknown family
    return get_family(cfg.model.family).layout_problems(cfg, world_size)


def memory_knob_problems(cfg: ExperimentConfig) -> list[str]:
    """Rules for activation recomputation, gradient reduce dtype and overlap_param_gather."""
    m, p, t = cfg.model, cfg.parallel, cfg.train
    pp, vpp = p.pipeline_model_parallel_size, p.virtual_pipeline_model_parallel_size
    problems = []
    granularity, method, n, per_stage = (
        t.recompute_granularity, t.recompute_method, t.recompute_num_layers, t.recompute_num_layers_per_stage
    )  # fmt: skip
    chunk_layers = m.num_layers // max(1, pp * (vpp or 1))  # megatron-core counts recompute layers per chunk
    if granularity is not None and granularity not in RECOMPUTE_GRANULARITIES:
        problems.append(
            f"train.recompute_granularity={granularity!r} is not one of: null, {', '.join(RECOMPUTE_GRANULARITIES)}"
        )
    elif granularity is None:
        if method is not None or n is not None or per_stage:
            problems.append(
                "train.recompute_method / recompute_num_layers / recompute_num_layers_per_stage are set but "
                "train.recompute_granularity is not (set it to 'full')"
            )
    elif granularity == "selective":
        if method is not None or n is not None or per_stage:
            problems.append(
                "train.recompute_granularity='selective' recomputes core attention in every layer: leave "
                "recompute_method, recompute_num_layers and recompute_num_layers_per_stage unset"
            )
    else:  # full
        if method not in RECOMPUTE_METHODS:
            problems.append(
                f"train.recompute_granularity='full' needs train.recompute_method in {', '.join(RECOMPUTE_METHODS)} "
                f"(got {method!r})"
            )
        if per_stage:
            if method != "block":
                problems.append("train.recompute_num_layers_per_stage needs train.recompute_method='block'")
            if len(per_stage) != pp:
                problems.append(
                    f"train.recompute_num_layers_per_stage has {len(per_stage)} entries; give one per pipeline "
                    f"stage (PP = {pp})"
                )
            bad = [k for k in per_stage if not isinstance(k, int) or not 0 <= k <= chunk_layers]
            if bad:
                problems.append(
                    f"train.recompute_num_layers_per_stage entries {bad} must be integers in 0..{chunk_layers} "
                    "(layers per model chunk)"
                )
        elif n is None:
            problems.append("train.recompute_granularity='full' needs train.recompute_num_layers")
        elif method == "uniform" and not 1 <= n <= chunk_layers:
            problems.append(
                f"train.recompute_num_layers ({n}) must be in 1..{chunk_layers} (layers per model chunk) "
                "with recompute_method='uniform'"
            )
        elif method == "block" and not 0 <= n <= chunk_layers:
            problems.append(
                f"train.recompute_num_layers ({n}) must be in 0..{chunk_layers} (layers per model chunk) "
                "with recompute_method='block'"
            )
    if p.grad_reduce_dtype not in GRAD_REDUCE_DTYPES:
        problems.append(f"parallel.grad_reduce_dtype={p.grad_reduce_dtype!r} is not one of: fp32, bf16")
    elif p.grad_reduce_dtype == "bf16" and t.precision != "bf16":
        problems.append(
            f"parallel.grad_reduce_dtype='bf16' needs train.precision=bf16 (got {t.precision!r}: the gradient "
            "buffers follow the parameters' dtype)"
        )
    if p.overlap_param_gather and not p.use_distributed_optimizer:
        problems.append("parallel.overlap_param_gather needs parallel.use_distributed_optimizer=true")
    if p.overlap_param_gather and not p.overlap_grad_reduce:
        problems.append("parallel.overlap_param_gather needs parallel.overlap_grad_reduce=true (as in Megatron-LM)")
    return problems


def validate_layout(cfg: ExperimentConfig, world_size: int) -> None:
    """Raise LayoutError naming every broken rule."""
    problems = layout_problems(cfg, world_size)
    if problems:
        raise LayoutError("invalid parallel layout:\n  - " + "\n  - ".join(problems))
