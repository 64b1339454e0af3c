"""Analytic parameter counts for a ModelConfig (what megatron-core's GPTModel will allocate)."""

from __future__ import annotations

from dataclasses import dataclass

from megatron_biomed.config.model import ModelConfig


@dataclass
class ParamCount:
    embedding: int
    position_embedding: int
    per_layer: int
    layers: int
    final_norm: int
    output_layer: int

    @property
    def total(self) -> int:
        return self.embedding + self.position_embedding + self.layers + self.final_norm + self.output_layer


def count_parameters(m: ModelConfig, padded_vocab: bool = False, tensor_model_parallel_size: int = 1) -> ParamCount:
    """Parameters of the model; ``padded_vocab`` counts the TP-padded embedding rows as allocated."""
    h, f = m.hidden_size, m.ffn_size
    vocab = m.padded_vocab_size(tensor_model_parallel_size) if padded_vocab else m.vocab_size
    head_dim = h // m.num_attention_heads
    kv = m.kv_heads * head_dim
    bias = m.add_bias_linear
    norm = 2 * h if m.normalization == "LayerNorm" else h
    qkv = h * (h + 2 * kv) + ((h + 2 * kv) if bias else 0)
    proj = h * h + (h if bias else 0)
    gated = m.activation == "swiglu"
    fc1 = h * f * (2 if gated else 1) + ((f * (2 if gated else 1)) if bias else 0)
    fc2 = f * h + (h if bias else 0)
    per_layer = 2 * norm + qkv + proj + fc1 + fc2
    return ParamCount(
        embedding=vocab * h,
        position_embedding=m.seq_length * h if m.position_embedding_type == "learned_absolute" else 0,
        per_layer=per_layer,
        layers=per_layer * m.num_layers,
        final_norm=norm,
        output_layer=0 if m.tie_embeddings else vocab * h,
    )


def format_report(name: str, m: ModelConfig) -> str:
    c = count_parameters(m)
    return (
        f"{name}: {c.total / 1e9:.3f}B parameters "
        f"(embedding {c.embedding / 1e6:.1f}M, positions {c.position_embedding / 1e6:.1f}M, "
        f"{m.num_layers} layers x {c.per_layer / 1e6:.2f}M, output {c.output_layer / 1e6:.1f}M)"
    )
