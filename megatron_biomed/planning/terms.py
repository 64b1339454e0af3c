"""The planner's per-family terms, by model family name: what one layer holds and saves on a GPU, what the
first and last pipeline stages add, and how a layer's work splits over TP.

memory.py and timing.py ask :func:`terms_for` for the terms of ``model.family`` and combine them the same way
for every family (pipeline stages, micro-batches in flight, recomputation, optimizer states); they import no
family's terms file. Every family the planner models is one line of :data:`TERMS`, its terms module imported
on first use: GPT decoders (``gpt2``, ``llama``) are :class:`~megatron_biomed.planning.gpt_terms.GPTTerms`,
Mamba2 is :class:`~megatron_biomed.planning.mamba_terms.Mamba2Terms`. Another family subclasses
:class:`FamilyTerms` in its own ``planning/<family>_terms.py`` and adds a line here (tests and plugins:
``TERMS.register``); its FLOPs and parameter count stay in models/, shared with training.
"""

from __future__ import annotations

from dataclasses import dataclass

from megatron_biomed.config.model import ModelConfig
from megatron_biomed.errors import BiomedError
from megatron_biomed.registry import Registry


class UnsupportedModel(BiomedError, ValueError):
    """The planner has no memory / time model for this model family yet."""


@dataclass
class StageParams:
    """Parameters one GPU of a pipeline stage holds (after the TP split)."""

    layers: int
    embedding: int = 0
    output: int = 0

    @property
    def total(self) -> int:
        return self.layers + self.embedding + self.output


class FamilyTerms:
    """What the planner needs from one model family. Byte counts are for one micro-batch of ``b`` sequences
    on one TP rank; ``e`` is the bytes of one activation element (2 in 16-bit, 4 in fp32)."""

    # Recomputation kinds that change anything for this family (the layout search tries these).
    recompute_kinds: tuple[str, ...] = ("none", "selective", "full")
    supports_sequence_parallel: bool = True
    # TP collectives of the hidden states per layer and micro-batch, forward + backward (full recomputation
    # repeats the forward ones).
    tp_collectives_forward: int = 2
    tp_collectives_backward: int = 2

    def layer_parameters_per_rank(self, m: ModelConfig, tp: int) -> int:
        raise NotImplementedError

    def embedding_parameters_per_rank(self, m: ModelConfig, tp: int) -> int:
        """Word (and position) embeddings on the first stage."""
        return m.padded_vocab_size(tp) * m.hidden_size // tp

    def final_norm_parameters(self, m: ModelConfig) -> int:
        return m.hidden_size

    def stage_parameters(self, m: ModelConfig, tp: int, pp: int, stage: int) -> StageParams:
        """Parameters on one GPU of pipeline ``stage`` (0 = first): the embedding on the first stage, the final
        norm and the output layer (or the last stage's copy of a tied embedding) on the last."""
        vocab = m.padded_vocab_size(tp) * m.hidden_size // tp
        p = StageParams(layers=m.num_layers // pp * self.layer_parameters_per_rank(m, tp))
        if stage == 0:
            p.embedding = self.embedding_parameters_per_rank(m, tp)
        if stage == pp - 1:
            p.output = self.final_norm_parameters(m)
            if not m.tie_embeddings or pp > 1:
                p.output += vocab
        return p

    def layer_activation_bytes(self, m: ModelConfig, b: int, tp: int, sp: bool, recompute: str, e: int,
                               mask_bytes: int = 1) -> float:  # fmt: skip
        """Bytes one layer saves for backward (``recompute``: "none" | "selective" | "full", the last meaning
        this layer is recomputed)."""
        raise NotImplementedError

    def recomputed_chunk_extra_bytes(self, m: ModelConfig, e: int) -> float:
        """Bytes a model chunk with recomputed layers saves once besides their inputs (default none)."""
        return 0.0

    def first_stage_extra_bytes(self, m: ModelConfig, b: int, tp: int, sp: bool, e: int, mask_bytes: int = 1) -> float:
        raise NotImplementedError

    def last_stage_extra_bytes(self, m: ModelConfig, b: int, tp: int, sp: bool, e: int) -> float:
        raise NotImplementedError

    def hidden_bytes(self, e: int) -> int:
        """Bytes of one element of the hidden states passed between layers and pipeline stages."""
        return e

    def selective_recompute_flops(self, m: ModelConfig) -> float:
        """Forward FLOPs per token per layer that selective recomputation repeats (default none)."""
        return 0.0

    def with_kernels(self, fused: bool | None) -> FamilyTerms:
        """These terms for fused GPU kernels (True), the PyTorch fallbacks (False) or the model config's own
        choice (None). Default: the config decides (GPT decoders: ``model.kernels``)."""
        return self


# The terms class of each model family, constructed on each use (classes: a family's terms hold no state
# beyond the kernels choice of :meth:`FamilyTerms.with_kernels`).
TERMS: Registry[type[FamilyTerms]] = Registry(
    "planner terms for model family",
    {
        "gpt2": "megatron_biomed.planning.gpt_terms:GPTTerms",
        "llama": "megatron_biomed.planning.gpt_terms:GPTTerms",
        "mamba2": "megatron_biomed.planning.mamba_terms:Mamba2Terms",
    },
    error=UnsupportedModel,
    plural="families with planner terms",
    hint="add the family's FamilyTerms subclass to TERMS in megatron_biomed/planning/terms.py",
)


def terms_for(m: ModelConfig, fused_kernels: bool | None = None) -> FamilyTerms:
    """The planner terms of ``m``'s family (``fused_kernels``: see :meth:`FamilyTerms.with_kernels`);
    UnsupportedModel names the families covered."""
    if m.family not in TERMS:
        raise UnsupportedModel(
            f"model.family={m.family!r}: the planner models {', '.join(TERMS.names())} only "
            "(megatron_biomed/planning/terms.py); another family registers its per-layer terms there"
        )
    return TERMS.get(m.family)().with_kernels(fused_kernels)


def check_supported(m: ModelConfig) -> None:
    """Refuse families the planner has no terms for, naming those it has."""
    terms_for(m)
