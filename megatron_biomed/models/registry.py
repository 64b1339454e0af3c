"""Model families by name (``model.family``): each one builds its megatron-core model chunks, gives its layer
spec, its parameter count and its training FLOPs per token.

``gpt2`` (BioMedLM) and ``llama`` (BioLLM-70B) are both megatron-core ``GPTModel`` decoders, told apart by
the ModelConfig fields (norm, activation, positions, GQA), so they share :class:`GPTFamily`. Another family
(Mamba2, a Hugging Face adapter) subclasses :class:`ModelFamily` and calls :func:`register_family`.

This module imports neither torch nor megatron-core (config validation reads the family names); builders
import them when called.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from megatron_biomed.config.model import ModelConfig
from megatron_biomed.config.param_count import ParamCount, decoder_flops_per_token, decoder_parameters

if TYPE_CHECKING:
    from megatron_biomed.config.experiment import ExperimentConfig
    from megatron_biomed.kernels.registry import KernelProvider

__all__ = ["GPTFamily", "ModelFamily", "UnknownFamilyError", "family_names", "get_family", "register_family"]


class UnknownFamilyError(LookupError):
    """No model family is registered under the name asked for (the message lists the known ones)."""


@dataclass(frozen=True)
class ModelFamily:
    """What the rest of the library needs from a model family. Subclasses implement every method."""

    name: str
    description: str = ""

    def build_model_chunks(self, cfg: ExperimentConfig, tconfig=None) -> list:
        """The megatron-core model chunks this rank holds, one per virtual pipeline stage, on the right
        device (``tconfig``: a megatron-core TransformerConfig, made from ``cfg`` when None)."""
        raise NotImplementedError(f"model family {self.name!r} has no model builder")

    def layer_spec(
        self, cfg: ExperimentConfig, tconfig, vp_stage: int | None = None, provider: KernelProvider | None = None
    ):
        """The layer (or block) spec of one model chunk as its constructor takes it, on ``provider``
        (default: ``cfg.model.kernels``)."""
        raise NotImplementedError(f"model family {self.name!r} has no layer spec")

    def count_parameters(
        self, m: ModelConfig, padded_vocab: bool = False, tensor_model_parallel_size: int = 1
    ) -> ParamCount:
        """Parameters of the model; ``padded_vocab`` counts TP-padded embedding rows as allocated."""
        raise NotImplementedError(f"model family {self.name!r} has no parameter count")

    def flops_per_token(self, m: ModelConfig) -> float:
        """Training (forward + backward) FLOPs per token, for throughput and MFU."""
        raise NotImplementedError(f"model family {self.name!r} has no FLOP count")

    def layout_problems(self, cfg: ExperimentConfig, world_size: int) -> list[str]:
        """Parallel-layout rules of this family beyond the common ones in parallel/layout.py (default: none)."""
        return []


@dataclass(frozen=True)
class GPTFamily(ModelFamily):
    """Decoder-only transformers built as megatron-core ``GPTModel`` (models/gpt.py), layers from
    models/layer_specs.py on the ``model.kernels`` choice."""

    def build_model_chunks(self, cfg: ExperimentConfig, tconfig=None) -> list:
        from megatron_biomed.models.gpt import build_gpt_model_chunks

        return build_gpt_model_chunks(cfg, tconfig)

    def layer_spec(
        self, cfg: ExperimentConfig, tconfig, vp_stage: int | None = None, provider: KernelProvider | None = None
    ):
        from megatron_biomed.models.gpt import gpt_chunk_spec

        return gpt_chunk_spec(cfg, tconfig, vp_stage=vp_stage, provider=provider)

    def count_parameters(
        self, m: ModelConfig, padded_vocab: bool = False, tensor_model_parallel_size: int = 1
    ) -> ParamCount:
        return decoder_parameters(m, padded_vocab=padded_vocab, tensor_model_parallel_size=tensor_model_parallel_size)

    def flops_per_token(self, m: ModelConfig) -> float:
        return decoder_flops_per_token(m)


_FAMILIES: dict[str, ModelFamily] = {}


def register_family(name: str, family: ModelFamily, *, replace: bool = False) -> ModelFamily:
    """Make ``family`` available as ``model.family=name``. Registering a taken name again is refused
    unless ``replace``."""
    if name in _FAMILIES and not replace and _FAMILIES[name] is not family:
        raise ValueError(f"model family {name!r} is already registered ({_FAMILIES[name]!r}); pass replace=True")
    _FAMILIES[name] = family
    return family


def get_family(name: str) -> ModelFamily:
    """The family registered as ``name``."""
    if name not in _FAMILIES:
        raise UnknownFamilyError(
            f"unknown model family {name!r}; known families: {', '.join(_FAMILIES)} "
            "(set model.family, or register a new one with megatron_biomed.models.registry.register_family)"
        )
    return _FAMILIES[name]


def family_names() -> tuple[str, ...]:
    """Registered family names, in registration order."""
    return tuple(_FAMILIES)


register_family("gpt2", GPTFamily("gpt2", "GPT-2 style decoder (LayerNorm, GELU, learned positions): BioMedLM"))
register_family("llama", GPTFamily("llama", "LLaMA style decoder (RMSNorm, SwiGLU, RoPE, GQA): BioLLM-70B"))

# Families defined in their own packages register themselves on import (after the names above exist).
import megatron_biomed.models.mamba.family  # noqa: E402,F401  "mamba2"
