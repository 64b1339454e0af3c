"""``model.family=mamba2`` (BioMamba): megatron-core ``HybridModel`` chunks of Mamba2 layers, their spec, parameter
count and FLOPs. Registered in models/registry.py.

The layer pattern is ``"M" * num_layers`` cut with ``|`` into one segment per (virtual) pipeline stage, so
megatron-core's ``select_pipeline_segment`` gives each chunk its layers. The mixer is megatron-core's
``MambaMixer`` when ``mamba_ssm`` and ``causal_conv1d`` import (their fused kernels), otherwise our
:class:`~megatron_biomed.models.mamba.mixer.TorchMambaMixer` (same parameters and checkpoint keys). Parameter
counts and FLOPs are in models/mamba/counts.py.

Segments of a row (packed documents) are kept apart by restarting the convolution and the scan where the
position ids return to 0 (models/mamba/model.py), which our mixer does; with megatron-core's mixer nothing
restarts (its ``seq_idx`` path is not wired or tested here), so that model packs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from megatron.core.fusions.fused_bias_dropout import get_bias_dropout_add
from megatron.core.models.hybrid.hybrid_block import HybridStackSubmodules
from megatron.core.ssm import mamba_mixer
from megatron.core.ssm.mamba_layer import MambaLayer, MambaLayerSubmodules
from megatron.core.ssm.mamba_mixer import MambaMixer, MambaMixerSubmodules
from megatron.core.tensor_parallel import ColumnParallelLinear, RowParallelLinear
from megatron.core.transformer.spec_utils import ModuleSpec
from megatron.core.transformer.torch_norm import WrappedTorchNorm

from megatron_biomed.config.model import ModelConfig
from megatron_biomed.models.common import chunk_stages, finish_chunk, transformer_config
from megatron_biomed.models.mamba.counts import mamba_dims, mamba_flops_per_token, mamba_parameters
from megatron_biomed.models.mamba.mixer import TorchMambaMixer
from megatron_biomed.models.mamba.model import MambaLM
from megatron_biomed.models.mamba.stack import TorchNormHybridStack
from megatron_biomed.models.registry import ModelFamily, ParamCount, SegmentIsolation

__all__ = ["MAMBA2", "Mamba2Family", "build_mamba_model_chunks", "hybrid_stack_spec", "layer_pattern"]


def layer_pattern(num_layers: int, segments: int) -> str:
    """``"M" * num_layers`` split into ``segments`` equal pipeline segments with ``|``."""
    if num_layers % segments:
        raise ValueError(f"{segments} pipeline segments must divide num_layers ({num_layers})")
    return "|".join(["M" * (num_layers // segments)] * segments)


def mamba_ssm_available() -> bool:
    """Whether megatron-core's own MambaMixer can be built (mamba_ssm and causal_conv1d on a GPU)."""
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
    if use_mamba_ssm is None:
        use_mamba_ssm = mamba_ssm_available()
    mixer = MambaMixer if use_mamba_ssm else TorchMambaMixer
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
    m, p = cfg.model, cfg.parallel
    tconfig = tconfig or transformer_config(cfg)
    apply_mamba_config(tconfig, m)
    vpp = p.virtual_pipeline_model_parallel_size
    pattern = layer_pattern(m.num_layers, p.pipeline_model_parallel_size * (vpp or 1))
    use_mamba_ssm = mamba_ssm_available()
    spec = hybrid_stack_spec(m, use_mamba_ssm)
    chunks = []
    for vp_stage, first, last in chunk_stages(cfg):
        model = MambaLM(
            config=tconfig,
            hybrid_stack_spec=spec,
            vocab_size=m.padded_vocab_size(p.tensor_model_parallel_size),
            max_sequence_length=m.seq_length,
            hybrid_layer_pattern=pattern,
            pre_process=first,
            post_process=last,
            share_embeddings_and_output_weights=m.tie_embeddings,
            position_embedding_type="none",
            vp_stage=vp_stage,
            # Restart the conv and scan where the position ids return to 0: packed documents (pretraining with
            # data.reset_position_ids, SFT packing) compute what each computes alone. Our mixer only.
            reset_at_documents=not use_mamba_ssm,
        )
        chunks.append(finish_chunk(model, cfg, tconfig))
    return chunks


@dataclass(frozen=True)
class Mamba2Family(ModelFamily):
    """Mamba2 language models as megatron-core HybridModel (all-Mamba layer pattern)."""

    def build_model_chunks(self, cfg, tconfig=None) -> list:
        return build_mamba_model_chunks(cfg, tconfig)

    def count_parameters(self, m, padded_vocab=False, tensor_model_parallel_size=1) -> ParamCount:
        return mamba_parameters(m, padded_vocab=padded_vocab, tensor_model_parallel_size=tensor_model_parallel_size)

    def flops_per_token(self, m) -> float:
        return mamba_flops_per_token(m)

    def segment_isolation(self, cfg) -> SegmentIsolation:
        """No attention mask: our mixer restarts at documents (``reset_at_documents`` in the builder above);
        megatron-core's does not, so nothing may share a row."""
        return SegmentIsolation.NONE if mamba_ssm_available() else SegmentIsolation.STATE_RESET

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


MAMBA2 = Mamba2Family("mamba2", "Mamba2 state-space LM (megatron-core HybridModel): BioMamba")
