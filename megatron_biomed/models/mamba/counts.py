"""Parameter counts and training FLOPs of the ``mamba2`` family (what megatron-core's MambaMixer allocates).

One piece of arithmetic, :func:`mamba_layer`, gives the tensors of one Mamba2 layer; the parameter count, the
FLOPs and the planner's Mamba2 terms (planning/mamba_terms.py) are all made from it.
"""

from __future__ import annotations

from dataclasses import dataclass

from megatron_biomed.config.model import ModelConfig
from megatron_biomed.models.registry import ParamCount

__all__ = [
    "MambaDims", "MambaLayerParams", "mamba_dims", "mamba_flops_per_token", "mamba_layer", "mamba_layer_parameters",
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
