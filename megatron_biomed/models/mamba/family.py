"""``model.family=mamba2`` (BioMamba): megatron-core ``HybridModel`` chunks of Mamba2 layers, their spec, parameter
count and FLOPs. Registered in models/registry.py.

The layer pattern is ``"M" * num_layers`` cut with ``|`` into one segment per (virtual) pipeline stage, so
megatron-core's ``select_pipeline_segment`` gives each chunk its layers. The mixer is megatron-core's
``MambaMixer`` when ``mamba_ssm`` and ``causal_conv1d`` import (their fused kernels), otherwise our
:class:`~megatron_biomed.models.mamba.mixer.TorchMambaMixer` (same parameters and checkpoint keys).

This module imports neither torch nor megatron-core at import time.
"""

from __future__ import annotations

from dataclasses import dataclass

from megatron_biomed.config.model import ModelConfig
from megatron_biomed.config.param_count import ParamCount
from megatron_biomed.models.registry import ModelFamily, register_family

__all__ = [
    "Mamba2Family", "layer_pattern", "mamba_dims", "mamba_flops_per_token", "mamba_layer", "mamba_layer_parameters",
    "mamba_parameters",
]  # fmt: skip


@dataclass(frozen=True)
class MambaDims:
    d_model: int
    d_inner: int
    nheads: int
    ngroups: int
    d_state: int
    d_conv: int

    @property
    def in_proj_out(self) -> int:  # [z | x | B | C | dt]
        return 2 * self.d_inner + 2 * self.ngroups * self.d_state + self.nheads

    @property
    def conv_dim(self) -> int:  # [x | B | C]
        return self.d_inner + 2 * self.ngroups * self.d_state


def mamba_dims(m: ModelConfig) -> MambaDims:
    d_inner = m.mamba_expand * m.hidden_size
    return MambaDims(m.hidden_size, d_inner, d_inner // m.mamba_head_dim, m.mamba_num_groups, m.mamba_state_dim,
                     m.mamba_conv_kernel)  # fmt: skip


@dataclass(frozen=True)
class MambaLayerParams:
    """The parameters of one Mamba2 layer by tensor (what MambaMixer allocates, TP = 1)."""

    norm: int  # the layer's pre-norm (RMSNorm), replicated over TP
    in_proj: int  # d_model x [z | x | B | C | dt], column parallel
    out_proj: int  # d_inner x d_model, row parallel
    conv: int  # depthwise conv weight and bias, [x | B | C] channels
    heads: int  # dt_bias, A_log, D: one each per SSM head
    gated_norm: int  # the mixer's gated RMSNorm weight, split by heads

    @property
    def matmul(self) -> int:
        """Weights that multiply each token's activations (2 FLOPs per weight per token, forward)."""
        return self.in_proj + self.out_proj

    @property
    def tp_split(self) -> int:
        """The part TP divides (everything but the pre-norm)."""
        return self.matmul + self.conv + self.heads + self.gated_norm

    @property
    def total(self) -> int:
        return self.tp_split + self.norm


def mamba_layer(m: ModelConfig) -> MambaLayerParams:
    """One Mamba2 layer of ``m``: pre-norm, in_proj, depthwise conv (+bias), dt_bias, A_log, D, gated norm,
    out_proj. The parameter count, the FLOPs and the planner (planning/mamba_terms.py) are all made from it."""
    k = mamba_dims(m)
    return MambaLayerParams(
        norm=k.d_model, in_proj=k.d_model * k.in_proj_out, out_proj=k.d_inner * k.d_model,
        conv=k.conv_dim * (k.d_conv + 1), heads=3 * k.nheads, gated_norm=k.d_inner,
    )  # fmt: skip


def mamba_layer_parameters(m: ModelConfig) -> int:
    """Parameters of one Mamba2 layer."""
    return mamba_layer(m).total


def mamba_parameters(m: ModelConfig, padded_vocab: bool = False, tensor_model_parallel_size: int = 1) -> ParamCount:
    vocab = m.padded_vocab_size(tensor_model_parallel_size) if padded_vocab else m.vocab_size
    per_layer = mamba_layer_parameters(m)
    return ParamCount(
        embedding=vocab * m.hidden_size,
        position_embedding=0,
        per_layer=per_layer,
        layers=per_layer * m.num_layers,
        final_norm=m.hidden_size,
        output_layer=0 if m.tie_embeddings else vocab * m.hidden_size,
    )


def mamba_flops_per_token(m: ModelConfig) -> float:
    """Training FLOPs per token (3 x forward): 2 per weight of in_proj, out_proj and the logits; the conv; and
    the chunked scan per head (C.B products and their use inside a chunk ~ 2 x chunk x (state + head_dim),
    chunk states in and out ~ 4 x state x head_dim). The MFU logging (training/metrics.py) and the planner's
    compute time (planning/timing.py) both read it through the family."""
    k = mamba_dims(m)
    head_dim = k.d_inner // k.nheads
    scan = k.nheads * (2 * m.mamba_chunk_size * (k.d_state + head_dim) + 4 * k.d_state * head_dim)
    per_layer = 2 * mamba_layer(m).matmul + 2 * k.conv_dim * k.d_conv + scan
    return 3 * (m.num_layers * per_layer + 2 * m.vocab_size * m.hidden_size)


def layer_pattern(num_layers: int, segments: int) -> str:
    """``"M" * num_layers`` split into ``segments`` equal pipeline segments with ``|``."""
    if num_layers % segments:
        raise ValueError(f"{segments} pipeline segments must divide num_layers ({num_layers})")
    return "|".join(["M" * (num_layers // segments)] * segments)


def mamba_ssm_available() -> bool:
    """Whether megatron-core's own MambaMixer can be built (mamba_ssm and causal_conv1d on a GPU)."""
    import torch
    from megatron.core.ssm import mamba_mixer

    return bool(mamba_mixer.HAVE_MAMBA_SSM) and torch.cuda.is_available()


def apply_mamba_config(tconfig, m: ModelConfig) -> None:
    """Set the Mamba fields of megatron-core's TransformerConfig in place (the trainer keeps this object and
    later hands the schedule its hooks through it)."""
    k = mamba_dims(m)
    tconfig.mamba_state_dim = k.d_state
    tconfig.mamba_head_dim = m.mamba_head_dim
    tconfig.mamba_num_groups = k.ngroups
    tconfig.mamba_num_heads = None  # d_inner / head_dim, from expand
    tconfig.normalization = "RMSNorm"
    # mamba_ssm keeps the residual stream in fp32 (residual_in_fp32 in the public checkpoints' config)
    tconfig.fp32_residual_connection = True


def hybrid_stack_spec(m: ModelConfig, use_mamba_ssm: bool | None = None):
    """The HybridStack spec: Mamba layers (torch RMSNorm -> mixer -> residual), our torch final norm."""
    from megatron.core.fusions.fused_bias_dropout import get_bias_dropout_add
    from megatron.core.ssm.mamba_layer import MambaLayer, MambaLayerSubmodules
    from megatron.core.ssm.mamba_mixer import MambaMixer, MambaMixerSubmodules
    from megatron.core.tensor_parallel import ColumnParallelLinear, RowParallelLinear
    from megatron.core.transformer.spec_utils import ModuleSpec
    from megatron.core.transformer.torch_norm import WrappedTorchNorm

    from megatron_biomed.models.mamba.mixer import TorchMambaMixer
    from megatron_biomed.models.mamba.stack import TorchNormHybridStack

    if use_mamba_ssm is None:
        use_mamba_ssm = mamba_ssm_available()
    mixer = MambaMixer if use_mamba_ssm else TorchMambaMixer
    from megatron.core.models.hybrid.hybrid_block import HybridStackSubmodules

    return ModuleSpec(
        module=TorchNormHybridStack,
        submodules=HybridStackSubmodules(
            mamba_layer=ModuleSpec(
                module=MambaLayer,
                submodules=MambaLayerSubmodules(
                    norm=WrappedTorchNorm,
                    mixer=ModuleSpec(
                        module=mixer,
                        params={"d_conv": m.mamba_conv_kernel, "expand": m.mamba_expand,
                                "chunk_size": m.mamba_chunk_size},
                        submodules=MambaMixerSubmodules(in_proj=ColumnParallelLinear, out_proj=RowParallelLinear),
                    ),
                    mamba_bda=get_bias_dropout_add,
                    # The stock spec fuses the pre-norm into in_proj: keep its checkpoint key.
                    sharded_state_dict_keys_map={"norm.": "mixer.in_proj.layer_norm_"},
                ),
            ),
        ),
    )  # fmt: skip


def build_mamba_model_chunks(cfg, tconfig=None) -> list:
    """The HybridModel (:class:`~megatron_biomed.models.mamba.model.MambaLM`) chunks this rank holds, one per
    virtual pipeline stage."""
    import torch
    from megatron.core import parallel_state as ps

    from megatron_biomed.models.gpt import transformer_config
    from megatron_biomed.models.mamba.model import MambaLM

    m, p = cfg.model, cfg.parallel
    tconfig = tconfig or transformer_config(cfg)
    apply_mamba_config(tconfig, m)
    vpp = p.virtual_pipeline_model_parallel_size
    pattern = layer_pattern(m.num_layers, p.pipeline_model_parallel_size * (vpp or 1))
    use_mamba_ssm = mamba_ssm_available()
    spec = hybrid_stack_spec(m, use_mamba_ssm)
    chunks = []
    for stage in range(vpp or 1):
        vp_stage = stage if vpp else None
        model = MambaLM(
            config=tconfig,
            hybrid_stack_spec=spec,
            vocab_size=m.padded_vocab_size(p.tensor_model_parallel_size),
            max_sequence_length=m.seq_length,
            hybrid_layer_pattern=pattern,
            pre_process=ps.is_pipeline_first_stage(ignore_virtual=False, vp_stage=vp_stage),
            post_process=ps.is_pipeline_last_stage(ignore_virtual=False, vp_stage=vp_stage),
            share_embeddings_and_output_weights=m.tie_embeddings,
            position_embedding_type="none",
            vp_stage=vp_stage,
            # documents packed by data.reset_position_ids: restart the conv and scan at each (our mixer only)
            reset_at_documents=cfg.data.reset_position_ids and not use_mamba_ssm,
        )
        model.real_vocab_size = m.vocab_size  # the loss over real ids only (models/vocab_loss.py)
        if torch.cuda.is_available():
            model.cuda(torch.cuda.current_device())
        if tconfig.bf16 or tconfig.fp16:
            from megatron.core.transformer.module import Float16Module

            model = Float16Module(tconfig, model)
        chunks.append(model)
    return chunks


@dataclass(frozen=True)
class Mamba2Family(ModelFamily):
    """Mamba2 language models as megatron-core HybridModel (all-Mamba layer pattern)."""

    def build_model_chunks(self, cfg, tconfig=None) -> list:
        return build_mamba_model_chunks(cfg, tconfig)

    def layer_spec(self, cfg, tconfig, vp_stage=None, provider=None):
        return hybrid_stack_spec(cfg.model)

    def count_parameters(self, m, padded_vocab=False, tensor_model_parallel_size=1) -> ParamCount:
        return mamba_parameters(m, padded_vocab=padded_vocab, tensor_model_parallel_size=tensor_model_parallel_size)

    def flops_per_token(self, m) -> float:
        return mamba_flops_per_token(m)

    def layout_problems(self, cfg, world_size: int) -> list[str]:
        """Mamba2's TP rules (MambaMixer asserts them at build time, ssm/mamba_mixer.py:260-272)."""
        m, tp = cfg.model, cfg.parallel.tensor_model_parallel_size
        k = mamba_dims(m)
        problems = []
        if k.d_inner % m.mamba_head_dim:
            problems.append(f"model.mamba_head_dim ({m.mamba_head_dim}) must divide mamba_expand x hidden_size "
                            f"({k.d_inner})")  # fmt: skip
            return problems
        if k.nheads % k.ngroups:
            problems.append(f"model.mamba_num_groups ({k.ngroups}) must divide the SSM heads ({k.nheads})")
        if k.nheads % tp:
            problems.append(f"TP ({tp}) must divide the SSM heads ({k.nheads} = {k.d_inner} / {m.mamba_head_dim})")
        if k.ngroups % tp:
            if k.ngroups == 1:
                problems.append(
                    f"TP ({tp}) > 1 needs model.mamba_num_groups divisible by TP, and this model has 1 B/C group "
                    "(as the public state-spaces/mamba2-* checkpoints): each TP rank must hold whole groups, and "
                    "splitting or duplicating the one group changes the gated norm's grouping (measured: logits "
                    "change by 1.9-2.7). Use tensor_model_parallel_size=1 and scale with data parallelism, the "
                    "distributed optimizer (parallel.use_distributed_optimizer=true) and pipeline parallelism"
                )
            else:
                problems.append(f"TP ({tp}) must divide model.mamba_num_groups ({k.ngroups})")
        if cfg.parallel.sequence_parallel:
            problems.append("sequence_parallel is not supported by the mamba2 family (torch RMSNorm); set it false")
        return problems


register_family("mamba2", Mamba2Family("mamba2", "Mamba2 state-space LM (megatron-core HybridModel): BioMamba"))
