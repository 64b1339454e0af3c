"""Model architecture configuration (one dataclass for GPT-2 style and LLaMA style decoders)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

# The allowed values of ModelConfig's choice fields (config/loading.py refuses anything else when it reads a
# config). ``family`` and ``kernels`` name registered families (models/registry.py) and kernel providers
# (kernels/): their names come from those registries, handed to config/loading.py's validate by the launcher.
ACTIVATIONS = ("gelu", "gelu_tanh", "swiglu")
NORMALIZATIONS = ("LayerNorm", "RMSNorm")
POSITION_EMBEDDINGS = ("learned_absolute", "rope")


@dataclass
class ModelConfig:
    """Architecture of a decoder-only transformer built as a megatron-core GPTModel.

    ``family`` names the registered model family that builds, counts and times the model
    (megatron_biomed/models/registry.py: "gpt2" and "llama" are both GPTModel decoders, told apart by
    the fields below).
    """

    family: str = "gpt2"
    num_layers: int = 2
    hidden_size: int = 64
    num_attention_heads: int = 4
    # Grouped-query attention: number of key/value heads (None = multi-head attention).
    num_query_groups: Optional[int] = None
    # None = 4 x hidden_size.
    ffn_hidden_size: Optional[int] = None
    seq_length: int = 128
    vocab_size: int = 28896
    # The embedding table is padded to a multiple of this times the tensor-parallel size (Megatron's rule).
    make_vocab_size_divisible_by: int = 128
    position_embedding_type: str = "learned_absolute"  # or "rope"
    rotary_base: int = 10000
    normalization: str = "LayerNorm"  # or "RMSNorm"
    activation: str = "gelu"  # "gelu" (erf), "gelu_tanh" (GPT-2), or "swiglu"
    add_bias_linear: bool = True
    tie_embeddings: bool = True
    layernorm_epsilon: float = 1e-5
    # GPT-2's ``scale_attn_by_inverse_layer_idx`` (BioMedLM sets it): attention scores of layer i (0-based) are
    # scaled by 1 / (sqrt(head_dim) * (i + 1)). Not megatron-core's apply_query_key_layer_scaling, which
    # only moves the same scale into the softmax for fp16 stability and leaves the result unchanged.
    scale_attn_by_inverse_layer_idx: bool = False
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    init_method_std: float = 0.02
    # Implementation of norm / softmax / core attention: "auto" (the fastest that runs here, resolved at model build),
    # "csrc", "te", "sdpa", "torch" or "emu" (see megatron_biomed.kernels).
    kernels: str = "torch"
    # Mamba2 (family "mamba2"; ignored by the others). Defaults are mamba_ssm's Mamba2 module defaults, as the
    # public state-spaces/mamba2-* checkpoints use them; SSM heads = mamba_expand x hidden_size / mamba_head_dim.
    mamba_state_dim: int = 128
    mamba_head_dim: int = 64
    mamba_expand: int = 2
    mamba_num_groups: int = 1  # B/C groups; tensor parallelism needs them divisible by TP
    mamba_conv_kernel: int = 4
    mamba_chunk_size: int = 256  # tokens per chunk of the SSD scan

    @property
    def ffn_size(self) -> int:
        return self.ffn_hidden_size if self.ffn_hidden_size is not None else 4 * self.hidden_size

    @property
    def kv_heads(self) -> int:
        return self.num_query_groups if self.num_query_groups is not None else self.num_attention_heads

    def padded_vocab_size(self, tensor_model_parallel_size: int = 1) -> int:
        """Vocabulary rows in the embedding: vocab padded to a multiple of divisor x TP."""
        multiple = self.make_vocab_size_divisible_by * tensor_model_parallel_size
        return ((self.vocab_size + multiple - 1) // multiple) * multiple
