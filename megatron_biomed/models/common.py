"""What every model family shares: megatron-core's TransformerConfig from an ExperimentConfig (its fusions decided
by models/fusions.py), the facts ``model.kernels="auto"`` is resolved with, the activation-recomputation settings,
and finishing a built chunk (device, half precision)."""

from __future__ import annotations

import functools
import logging

import torch
import torch.nn.functional as F
from megatron.core import parallel_state as ps
from megatron.core.transformer.module import Float16Module
from megatron.core.transformer.transformer_config import TransformerConfig

from megatron_biomed.config.experiment import ExperimentConfig
from megatron_biomed.config.model import ACTIVATIONS
from megatron_biomed.kernels.registry import RunFacts
from megatron_biomed.models.fusions import decide_fusions, probe_fusions

logger = logging.getLogger(__name__)
_logged: set[str] = set()

# Keyed by TrainingConfig.precision (config/training.py PRECISIONS).
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# Keyed by ModelConfig.activation (config/model.py ACTIVATIONS); swiglu is SiLU on a gated linear unit.
_ACTIVATIONS = {
    "gelu": F.gelu,
    "gelu_tanh": functools.partial(F.gelu, approximate="tanh"),  # GPT-2's "gelu_new"
    "swiglu": F.silu,
}


def _activation(name: str):
    if name not in _ACTIVATIONS:
        raise ValueError(f"model.activation={name!r}: expected one of {', '.join(ACTIVATIONS)}")
    return _ACTIVATIONS[name]


def _log_once(msg: str) -> None:
    if msg not in _logged:
        _logged.add(msg)
        logger.info("%s", msg)


def run_facts(cfg: ExperimentConfig) -> RunFacts:
    """What this run asks of its kernels (``model.kernels="auto"`` is resolved with them)."""
    m = cfg.model
    return RunFacts(
        precision=cfg.train.precision,
        head_dim=m.hidden_size // m.num_attention_heads,
        sequence_parallel=cfg.parallel.sequence_parallel,
    )


def transformer_config(cfg: ExperimentConfig) -> TransformerConfig:
    """megatron-core TransformerConfig for this experiment (CPU-safe choices when no GPU is present; the fusions
    megatron-core has for this model and machine on, each one left off logged with its reason)."""
    m, p, t = cfg.model, cfg.parallel, cfg.train
    on_gpu = torch.cuda.is_available()
    dtype = DTYPES[t.precision]
    fusions = decide_fusions(m, probe_fusions())
    _log_once(fusions.describe())
    return TransformerConfig(
        num_layers=m.num_layers,
        hidden_size=m.hidden_size,
        num_attention_heads=m.num_attention_heads,
        num_query_groups=m.num_query_groups,
        ffn_hidden_size=m.ffn_size,
        hidden_dropout=m.hidden_dropout,
        attention_dropout=m.attention_dropout,
        layernorm_epsilon=m.layernorm_epsilon,
        normalization=m.normalization,
        gated_linear_unit=m.activation == "swiglu",
        activation_func=fusions.activation_func or _activation(m.activation),
        add_bias_linear=m.add_bias_linear,
        init_method_std=m.init_method_std,
        tensor_model_parallel_size=p.tensor_model_parallel_size,
        pipeline_model_parallel_size=p.pipeline_model_parallel_size,
        virtual_pipeline_model_parallel_size=p.virtual_pipeline_model_parallel_size,
        sequence_parallel=p.sequence_parallel,
        params_dtype=dtype,
        pipeline_dtype=dtype,
        bf16=t.precision == "bf16",
        fp16=t.precision == "fp16",
        batch_p2p_comm=p.batch_p2p_comm,
        # p2p_communication.py:419 synchronizes CUDA after batched p2p; nothing to wait for on CPU.
        batch_p2p_sync=on_gpu,
        use_cpu_initialization=not on_gpu,
        **fusions.flags,
        deallocate_pipeline_outputs=True,
        **recompute_settings(cfg),
    )


def recompute_settings(cfg: ExperimentConfig) -> dict:
    """TransformerConfig's activation-recomputation fields from ``cfg.train`` (checked by parallel/layout.py).

    ``recompute_num_layers_per_stage`` is read at this process's pipeline rank (megatron-core takes one
    ``recompute_num_layers`` per model chunk, and each process builds only its own stage's chunks)."""
    t = cfg.train
    if t.recompute_granularity is None:
        return {}
    if t.recompute_granularity == "selective":
        return {"recompute_granularity": "selective", "recompute_modules": ["core_attn"]}
    num_layers = t.recompute_num_layers
    if t.recompute_num_layers_per_stage:
        stage = ps.get_pipeline_model_parallel_rank() if ps.model_parallel_is_initialized() else 0
        num_layers = t.recompute_num_layers_per_stage[stage]
    return {
        "recompute_granularity": "full",
        "recompute_method": t.recompute_method,
        "recompute_num_layers": num_layers,
    }


def chunk_stages(cfg: ExperimentConfig) -> list[tuple[int | None, bool, bool]]:
    """(vp_stage, pre_process, post_process) of each model chunk this rank builds: one per virtual pipeline
    stage (``vp_stage`` None without virtual pipelining)."""
    vpp = cfg.parallel.virtual_pipeline_model_parallel_size
    stages = []
    for stage in range(vpp or 1):
        vp_stage = stage if vpp else None
        stages.append((
            vp_stage,
            ps.is_pipeline_first_stage(ignore_virtual=False, vp_stage=vp_stage),
            ps.is_pipeline_last_stage(ignore_virtual=False, vp_stage=vp_stage),
        ))  # fmt: skip
    return stages


def finish_chunk(model: torch.nn.Module, cfg: ExperimentConfig, tconfig: TransformerConfig) -> torch.nn.Module:
    """A freshly built chunk made ready to train: its loss over the real ``model.vocab_size`` ids
    (models/vocab_loss.py), on this rank's GPU when there is one, wrapped in Float16Module under bf16/fp16
    (half-precision weights and activations; the optimizer keeps fp32 main weights)."""
    model.real_vocab_size = cfg.model.vocab_size
    if torch.cuda.is_available():
        model.cuda(torch.cuda.current_device())
    if tconfig.bf16 or tconfig.fp16:
        model = Float16Module(tconfig, model)
    return model
