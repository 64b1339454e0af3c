"""Build GPT-2 style and LLaMA style megatron-core GPTModels (one chunk per virtual pipeline stage).

``build_model_chunks`` is the entry point for any model family: it asks models/registry.py for
``model.family``'s builder; for ``gpt2`` and ``llama`` that is :func:`build_gpt_model_chunks` here.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from megatron_biomed.config.experiment import ExperimentConfig
from megatron_biomed.config.model import ACTIVATIONS
from megatron_biomed.kernels.registry import KernelProvider, get_provider
from megatron_biomed.models.layer_specs import gpt_model_spec

# Keyed by TrainingConfig.precision (config/training.py PRECISIONS).
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
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


def transformer_config(cfg: ExperimentConfig):
    """megatron-core TransformerConfig for this experiment (CPU-safe choices when no GPU is present)."""
    from megatron.core.transformer.transformer_config import TransformerConfig

    m, p, t = cfg.model, cfg.parallel, cfg.train
    on_gpu = torch.cuda.is_available()
    dtype = _DTYPES[t.precision]
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
        activation_func=_activation(m.activation),
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
        gradient_accumulation_fusion=False,
        bias_activation_fusion=False,
        bias_dropout_fusion=False,
        masked_softmax_fusion=False,
        apply_rope_fusion=False,
        persist_layer_norm=False,
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
        from megatron.core import parallel_state as ps

        stage = ps.get_pipeline_model_parallel_rank() if ps.model_parallel_is_initialized() else 0
        num_layers = t.recompute_num_layers_per_stage[stage]
    return {
        "recompute_granularity": "full",
        "recompute_method": t.recompute_method,
        "recompute_num_layers": num_layers,
    }


def build_model_chunks(cfg: ExperimentConfig, tconfig=None) -> list:
    """The model chunks this rank holds (one per virtual pipeline stage), on the right device, built by
    ``cfg.model.family``'s builder (models/registry.py). The families' builders make each chunk compute its
    language-model loss over the real ``model.vocab_size`` ids, not the padded rows (models/vocab_loss.py)."""
    from megatron_biomed.models.registry import get_family

    return get_family(cfg.model.family).build_model_chunks(cfg, tconfig)


@functools.cache
def gpt_model_class():
    """megatron-core's GPTModel with its language-model loss over the real vocabulary (models/vocab_loss.py)."""
    from megatron.core.models.gpt import GPTModel

    from megatron_biomed.models.vocab_loss import RealVocabLoss

    class BiomedGPTModel(RealVocabLoss, GPTModel):
        pass

    return BiomedGPTModel


def build_gpt_model_chunks(cfg: ExperimentConfig, tconfig=None) -> list:
    """The GPTModel chunks this rank holds (one per virtual pipeline stage), on the right device
    (``model.kernels`` resolved once, here, for every chunk)."""
    from megatron.core import parallel_state as ps

    m = cfg.model
    tconfig = tconfig or transformer_config(cfg)
    provider = get_provider(m.kernels)
    vpp = cfg.parallel.virtual_pipeline_model_parallel_size
    chunks = []
    for stage in range(vpp or 1):
        vp_stage = stage if vpp else None
        model = gpt_model_class()(
            config=tconfig,
            transformer_layer_spec=gpt_chunk_spec(cfg, tconfig, vp_stage=vp_stage, provider=provider),
            vocab_size=m.padded_vocab_size(cfg.parallel.tensor_model_parallel_size),
            max_sequence_length=m.seq_length,
            pre_process=ps.is_pipeline_first_stage(ignore_virtual=False, vp_stage=vp_stage),
            post_process=ps.is_pipeline_last_stage(ignore_virtual=False, vp_stage=vp_stage),
            share_embeddings_and_output_weights=m.tie_embeddings,
            position_embedding_type=m.position_embedding_type,
            rotary_base=m.rotary_base,
            vp_stage=vp_stage,
        )
        model.real_vocab_size = m.vocab_size  # the loss over real ids only (models/vocab_loss.py)
        if torch.cuda.is_available():
            model.cuda(torch.cuda.current_device())
        if tconfig.bf16 or tconfig.fp16:
            # Half-precision weights and activations; the optimizer keeps fp32 main weights.
            from megatron.core.transformer.module import Float16Module

            model = Float16Module(tconfig, model)
        chunks.append(model)
    return chunks


def gpt_chunk_spec(
    cfg: ExperimentConfig, tconfig, vp_stage: int | None = None, provider: KernelProvider | None = None
):
    """``transformer_layer_spec`` of one GPTModel chunk (virtual pipeline stage ``vp_stage``) on
    ``provider`` (default: ``model.kernels`` resolved now)."""
    return gpt_model_spec(
        tconfig,
        normalization=cfg.model.normalization,
        kernels=provider if provider is not None else cfg.model.kernels,
        scale_attn_by_inverse_layer_idx=cfg.model.scale_attn_by_inverse_layer_idx,
        vp_stage=vp_stage,
    )
