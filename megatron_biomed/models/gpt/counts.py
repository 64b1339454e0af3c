"""Parameter counts and training FLOPs of the GPT decoder families (what megatron-core's GPTModel allocates).

One piece of arithmetic, :func:`decoder_layer`, gives the weights of one decoder layer split by what they
are; the parameter count (:func:`decoder_parameters`), the FLOPs (:func:`decoder_flops_per_token`) and the
planner's GPT terms (planning/gpt_terms.py) are all made from it.
"""

from __future__ import annotations

from dataclasses import dataclass

from megatron_biomed.config.model import ModelConfig
from megatron_biomed.models.registry import ParamCount


@dataclass(frozen=True)
class DecoderLayer:
    """The parameters of one decoder layer (attention + MLP), by matrix; biases and norms apart."""

    qkv: int  # fused query/key/value projection: h x (h + 2 kv)
    proj: int  # attention output projection: h x h
    fc1: int  # MLP input projection (both halves under SwiGLU): h x f (x 2)
    fc2: int  # MLP output projection: f x h
    biases: int  # of the four linears above, when add_bias_linear
    norms: int  # input and pre-MLP norms (weight, and bias under LayerNorm)

    @property
    def matmul(self) -> int:
        """Weights that multiply each token's activations (2 FLOPs per weight per token, forward)."""
        return self.qkv + self.proj + self.fc1 + self.fc2

    @property
    def total(self) -> int:
        return self.matmul + self.biases + self.norms


def norm_parameters(m: ModelConfig) -> int:
    """Parameters of one norm: weight and bias (LayerNorm) or weight only (RMSNorm)."""
    return 2 * m.hidden_size if m.normalization == "LayerNorm" else m.hidden_size


def decoder_layer(m: ModelConfig) -> DecoderLayer:
    """One decoder layer of ``m`` (GQA, SwiGLU and biases as configured)."""
    h, f = m.hidden_size, m.ffn_size
    kv = m.kv_heads * (h // m.num_attention_heads)
    gated = 2 if m.activation == "swiglu" else 1
    biases = (h + 2 * kv) + h + gated * f + h if m.add_bias_linear else 0
    return DecoderLayer(
        qkv=h * (h + 2 * kv),
        proj=h * h,
        fc1=gated * h * f,
        fc2=f * h,
        biases=biases,
        norms=2 * norm_parameters(m),
    )


def decoder_parameters(m: ModelConfig, padded_vocab: bool = False, tensor_model_parallel_size: int = 1) -> ParamCount:
    """Parameters of a GPTModel decoder; ``padded_vocab`` counts the TP-padded embedding rows as allocated."""
    h = m.hidden_size
    vocab = m.padded_vocab_size(tensor_model_parallel_size) if padded_vocab else m.vocab_size
    per_layer = decoder_layer(m).total
    return ParamCount(
        embedding=vocab * h,
        position_embedding=m.seq_length * h if m.position_embedding_type == "learned_absolute" else 0,
        per_layer=per_layer,
        layers=per_layer * m.num_layers,
        final_norm=norm_parameters(m),
        output_layer=0 if m.tie_embeddings else vocab * h,
    )


def decoder_flops_per_token(m: ModelConfig) -> int:
    """Training FLOPs per token (forward + backward = 3 x forward): 2 FLOPs per multiply-add in every
    matmul, including the logits, plus the attention score and value products (not halved for causal)."""
    matmul_params = m.num_layers * decoder_layer(m).matmul + m.vocab_size * m.hidden_size
    attention = m.num_layers * 2 * m.seq_length * m.hidden_size  # QK^T and AV: s x h multiply-adds each per token
    return 3 * (2 * matmul_params + 2 * attention)

