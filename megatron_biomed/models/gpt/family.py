"""``model.family`` = ``gpt2`` (BioMedLM) and ``llama`` (BioLLM-70B): megatron-core GPTModel chunks, one per
virtual pipeline stage, their layers from models/gpt/specs.py on the ``model.kernels`` provider, their counts
from models/gpt/counts.py. Registered in models/registry.py."""

from __future__ import annotations

from dataclasses import dataclass

from megatron.core.models.gpt import GPTModel

from megatron_biomed.config.experiment import ExperimentConfig
from megatron_biomed.config.model import ModelConfig
from megatron_biomed.kernels.registry import KernelProvider, get_provider, provider_class, resolve_auto
from megatron_biomed.models.common import chunk_stages, finish_chunk, run_facts, transformer_config
from megatron_biomed.models.gpt.counts import decoder_flops_per_token, decoder_parameters
from megatron_biomed.models.gpt.specs import gpt_model_spec
from megatron_biomed.models.registry import ModelFamily, ParamCount, SegmentIsolation
from megatron_biomed.models.vocab_loss import RealVocabLoss


class BiomedGPTModel(RealVocabLoss, GPTModel):
    """megatron-core's GPTModel with its language-model loss over the real vocabulary (models/vocab_loss.py)."""


def gpt_chunk_spec(cfg: ExperimentConfig, tconfig, vp_stage: int | None = None, provider: KernelProvider | None = None):
    """``transformer_layer_spec`` of one GPTModel chunk (virtual pipeline stage ``vp_stage``) on
    ``provider`` (default: ``model.kernels`` resolved now, for this run)."""
    return gpt_model_spec(
        tconfig,
        normalization=cfg.model.normalization,
        kernels=provider if provider is not None else get_provider(cfg.model.kernels, run_facts(cfg)),
        scale_attn_by_inverse_layer_idx=cfg.model.scale_attn_by_inverse_layer_idx,
        vp_stage=vp_stage,
    )


def build_gpt_model_chunks(cfg: ExperimentConfig, tconfig=None) -> list:
    """The GPTModel chunks this rank holds (one per virtual pipeline stage), on the right device
    (``model.kernels`` resolved once, here, for every chunk; ``"auto"`` logs what it resolved to and why)."""
    m = cfg.model
    tconfig = tconfig or transformer_config(cfg)
    provider = get_provider(m.kernels, run_facts(cfg))
    chunks = []
    for vp_stage, first, last in chunk_stages(cfg):
        model = BiomedGPTModel(
            config=tconfig,
            transformer_layer_spec=gpt_chunk_spec(cfg, tconfig, vp_stage=vp_stage, provider=provider),
            vocab_size=m.padded_vocab_size(cfg.parallel.tensor_model_parallel_size),
            max_sequence_length=m.seq_length,
            pre_process=first,
            post_process=last,
            share_embeddings_and_output_weights=m.tie_embeddings,
            position_embedding_type=m.position_embedding_type,
            rotary_base=m.rotary_base,
            vp_stage=vp_stage,
        )
        chunks.append(finish_chunk(model, cfg, tconfig))
    return chunks


@dataclass(frozen=True)
class GPTFamily(ModelFamily):
    """Decoder-only transformers built as megatron-core ``GPTModel``, layers on the ``model.kernels`` choice."""

    def build_model_chunks(self, cfg: ExperimentConfig, tconfig=None) -> list:
        return build_gpt_model_chunks(cfg, tconfig)

    def count_parameters(
        self, m: ModelConfig, padded_vocab: bool = False, tensor_model_parallel_size: int = 1
    ) -> ParamCount:
        return decoder_parameters(m, padded_vocab=padded_vocab, tensor_model_parallel_size=tensor_model_parallel_size)

    def flops_per_token(self, m: ModelConfig) -> float:
        return decoder_flops_per_token(m)

    def segment_isolation(self, cfg: ExperimentConfig) -> SegmentIsolation:
        kernels = cfg.model.kernels
        if kernels == "auto":
            kernels = resolve_auto(run_facts(cfg)).choice
        # Transformer Engine's causal layers ignore a given mask: segments of one row would see each other.
        return SegmentIsolation.ATTENTION_MASK if provider_class(kernels).honours_attention_mask else SegmentIsolation.NONE


GPT2 = GPTFamily("gpt2", "GPT-2 style decoder (LayerNorm, GELU, learned positions): BioMedLM")
LLAMA = GPTFamily("llama", "LLaMA style decoder (RMSNorm, SwiGLU, RoPE, GQA): BioLLM-70B")
