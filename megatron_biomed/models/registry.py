"""Model families by name (``model.family``): the family record, and what every caller asks of a family --
its model chunks, its parameter count, its training FLOPs per token, and how it keeps segments of one row apart
(:class:`SegmentIsolation`, asked by evaluation and SFT before they pack).

Every registered family is in :data:`FAMILIES` below, one line each ("module:attribute" of its record, imported
when first asked for). A family's code sits in its own folder: ``models/gpt/`` (``gpt2``: BioMedLM, ``llama``:
BioLLM-70B, both megatron-core GPTModel decoders) and ``models/mamba/`` (``mamba2``: BioMamba, megatron-core
HybridModel). What the families share (TransformerConfig, recomputation, finishing a chunk) is in
``models/common.py``.

This module imports neither torch nor megatron-core: the planner and the dry run read counts through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from megatron_biomed.config.experiment import ExperimentConfig
from megatron_biomed.config.model import ModelConfig
from megatron_biomed.errors import BiomedError
from megatron_biomed.registry import Registry

__all__ = [
    "FAMILIES", "ModelFamily", "ParamCount", "SegmentIsolation", "UnknownFamilyError", "build_model_chunks",
    "count_parameters", "family_names", "flops_per_token", "get_family", "register_family",
]  # fmt: skip


class UnknownFamilyError(BiomedError, LookupError):
    """No model family is registered under the name asked for (the message lists the known ones)."""


@dataclass
class ParamCount:
    """Parameters of a model by part (what its family's builder allocates)."""

    embedding: int
    position_embedding: int
    per_layer: int
    layers: int
    final_norm: int
    output_layer: int

    @property
    def total(self) -> int:
        return self.embedding + self.position_embedding + self.layers + self.final_norm + self.output_layer


class SegmentIsolation(str, Enum):
    """How a model keeps the segments of one row (packed documents, options behind one prompt) apart.

    * ``attention_mask``: a segment sees what the ``[b, 1, S, S]`` attention mask lets it see. Independent
      documents can share a row (block-diagonal mask), and so can continuations of one shared prompt (each
      sees the prompt and itself).
    * ``state_reset``: no attention; the recurrent state and the convolution restart wherever the position ids
      return to 0 (the packers restart them at every document). Independent documents can share a row; options
      behind one shared prompt cannot, since a restart forgets the prompt as well.
    * ``none``: nothing separates segments: one segment per row.
    """

    ATTENTION_MASK = "attention_mask"
    STATE_RESET = "state_reset"
    NONE = "none"

    @property
    def packs_documents(self) -> bool:
        """Independent documents may share a row (SFT packing) and compute what each computes alone."""
        return self in (SegmentIsolation.ATTENTION_MASK, SegmentIsolation.STATE_RESET)

    @property
    def shares_prompt(self) -> bool:
        """Continuations may share one forward of their prompt and each compute what prompt + it computes alone."""
        return self is SegmentIsolation.ATTENTION_MASK


@dataclass(frozen=True)
class ModelFamily:
    """What the rest of the library needs from a model family. A family subclasses it and implements every
    method (``layout_problems`` has a default)."""

    name: str
    description: str = ""

    def build_model_chunks(self, cfg: ExperimentConfig, tconfig=None) -> list:
        """The megatron-core model chunks this rank holds, one per virtual pipeline stage, on the right
        device (``tconfig``: a megatron-core TransformerConfig, made from ``cfg`` when None)."""
        raise NotImplementedError(f"model family {self.name!r} has no model builder")

    def count_parameters(
        self, m: ModelConfig, padded_vocab: bool = False, tensor_model_parallel_size: int = 1
    ) -> ParamCount:
        """Parameters of the model; ``padded_vocab`` counts TP-padded embedding rows as allocated."""
        raise NotImplementedError(f"model family {self.name!r} has no parameter count")

    def flops_per_token(self, m: ModelConfig) -> float:
        """Training (forward + backward) FLOPs per token, for throughput and MFU."""
        raise NotImplementedError(f"model family {self.name!r} has no FLOP count")

    def segment_isolation(self, cfg: ExperimentConfig) -> SegmentIsolation:
        """How the model built for ``cfg`` keeps the segments of one row apart; evaluation and SFT pack rows
        only as far as this allows."""
        raise NotImplementedError(f"model family {self.name!r} does not say how it keeps packed segments apart")

    def layout_problems(self, cfg: ExperimentConfig, world_size: int) -> list[str]:
        """Parallel-layout rules of this family beyond the common ones in parallel/layout.py (default: none)."""
        return []


FAMILIES: Registry[ModelFamily] = Registry(
    "model family",
    {
        "gpt2": "megatron_biomed.models.gpt.family:GPT2",
        "llama": "megatron_biomed.models.gpt.family:LLAMA",
        "mamba2": "megatron_biomed.models.mamba.family:MAMBA2",
    },
    error=UnknownFamilyError,
    plural="families",
    hint="set model.family, or register a new one in megatron_biomed/models/registry.py",
)


def get_family(name: str) -> ModelFamily:
    """The family registered as ``name``."""
    return FAMILIES.get(name)


def family_names() -> tuple[str, ...]:
    """Registered family names, in table order."""
    return FAMILIES.names()


def register_family(name: str, family: ModelFamily | str, *, replace: bool = False):
    """Make ``family`` (a record or "module:attribute") available as ``model.family=name`` (tests, plugins);
    a taken name is refused unless ``replace``."""
    return FAMILIES.register(name, family, replace=replace)


def build_model_chunks(cfg: ExperimentConfig, tconfig=None) -> list:
    """The model chunks this rank holds (one per virtual pipeline stage), on the right device, built by
    ``cfg.model.family``'s builder. Every family's chunks compute their language-model loss over the real
    ``model.vocab_size`` ids, not the padded rows (models/vocab_loss.py)."""
    return get_family(cfg.model.family).build_model_chunks(cfg, tconfig)


def count_parameters(m: ModelConfig, padded_vocab: bool = False, tensor_model_parallel_size: int = 1) -> ParamCount:
    """Parameters of the model, as counted by its family; ``padded_vocab`` counts the TP-padded embedding
    rows as allocated."""
    return get_family(m.family).count_parameters(
        m, padded_vocab=padded_vocab, tensor_model_parallel_size=tensor_model_parallel_size
    )


def flops_per_token(m: ModelConfig) -> float:
    """Training FLOPs per token of ``m`` as its family counts them (MFU logging and the planner's time)."""
    return get_family(m.family).flops_per_token(m)

