"""megatron_biomed.models.registry: families by name, their parameter counts and FLOPs (one formula for
both), the dispatch of build_model_chunks and flops_per_token, and how each family keeps segments apart."""

from __future__ import annotations

import dataclasses

import pytest

from megatron_biomed.config import get_preset
from megatron_biomed.models import registry
from megatron_biomed.models.gpt.counts import decoder_layer
from megatron_biomed.models.gpt.family import GPTFamily
from megatron_biomed.models.registry import (
    ModelFamily,
    SegmentIsolation,
    UnknownFamilyError,
    build_model_chunks,
    count_parameters,
    get_family,
    register_family,
)
from megatron_biomed.models.registry import flops_per_token as model_flops_per_token
from megatron_biomed.training.launch import load_run_config

# Counted by the code before the registry existed (config/param_count.py, training/metrics.py).
EXPECTED = {
    # preset: (total, total padded for TP=8, per layer, training FLOPs per token)
    "biomedlm-2.7b": (2_594_247_680, 2_596_295_680, 78_676_480, 16_549_969_920),
    "biollm-70b": (69_009_416_192, 69_022_785_536, 855_654_400, 444_589_670_400),
    "tiny-biomedlm": (236_928, 269_696, 49_984, 1_572_864),
    "tiny-llama": (213_568, 279_104, 36_992, 1_277_952),
}


def test_gpt2_and_llama_are_registered_gpt_families():
    assert registry.family_names()[:2] == ("gpt2", "llama")
    for name in ("gpt2", "llama"):
        family = get_family(name)
        assert isinstance(family, GPTFamily) and family.name == name


def test_unknown_family_lists_the_known_ones():
    with pytest.raises(UnknownFamilyError, match=r"unknown model family 'gpt3'; known families: gpt2, llama"):
        get_family("gpt3")
    m = get_preset("tiny-biomedlm").model
    m.family = "gpt3"
    with pytest.raises(UnknownFamilyError, match="known families: gpt2, llama"):
        count_parameters(m)


@pytest.mark.parametrize("preset", list(EXPECTED))
def test_counts_and_flops_unchanged(preset):
    m = get_preset(preset).model
    total, padded, per_layer, flops = EXPECTED[preset]
    family = get_family(m.family)
    assert family.count_parameters(m).total == count_parameters(m).total == total
    assert count_parameters(m, padded_vocab=True, tensor_model_parallel_size=8).total == padded
    assert count_parameters(m).per_layer == per_layer
    assert family.flops_per_token(m) == model_flops_per_token(m) == flops


def test_published_sizes():
    assert f"{count_parameters(get_preset('biomedlm-2.7b').model).total / 1e9:.3f}B" == "2.594B"
    m = get_preset("biollm-70b").model
    m.vocab_size = 32000  # LLaMA-2's own vocabulary
    assert f"{count_parameters(m).total / 1e9:.2f}B" == "68.98B"


@pytest.mark.parametrize("preset", list(EXPECTED))
def test_flops_come_from_the_parameter_counts_layer_terms(preset):
    m = get_preset(preset).model
    layer = decoder_layer(m)
    assert count_parameters(m).per_layer == layer.total == layer.matmul + layer.biases + layer.norms
    matmul_params = m.num_layers * layer.matmul + m.vocab_size * m.hidden_size
    attention = m.num_layers * 2 * m.seq_length * m.hidden_size
    assert model_flops_per_token(m) == 3 * (2 * matmul_params + 2 * attention)
    # Changing a layer term moves both counts: no second copy of the arithmetic to forget.
    wider = dataclasses.replace(m, ffn_hidden_size=2 * m.ffn_size)
    assert count_parameters(wider).per_layer > count_parameters(m).per_layer
    assert model_flops_per_token(wider) > model_flops_per_token(m)


@dataclasses.dataclass(frozen=True)
class _FakeFamily(ModelFamily):
    def build_model_chunks(self, cfg, tconfig=None) -> list:
        return ["chunk", cfg.name, tconfig]

    def count_parameters(self, m, padded_vocab=False, tensor_model_parallel_size=1):
        return get_family("gpt2").count_parameters(m, padded_vocab, tensor_model_parallel_size)

    def flops_per_token(self, m) -> float:
        return 42.0


def test_a_registered_family_is_what_the_library_uses():
    with registry.FAMILIES.scoped():  # the registration is undone after the test
        fake = register_family("fake", _FakeFamily("fake"))
        cfg = load_run_config("tiny-biomedlm", overrides=["model.family=fake"])  # a registered family passes validation
        assert build_model_chunks(cfg, tconfig="tc") == ["chunk", "tiny-biomedlm", "tc"]
        assert model_flops_per_token(cfg.model) == 42.0
        assert count_parameters(cfg.model).total == EXPECTED["tiny-biomedlm"][0]
        # A name is registered once, unless replaced on purpose.
        with pytest.raises(ValueError, match="'fake' is already registered"):
            register_family("fake", _FakeFamily("fake"))
        assert register_family("fake", fake) is fake  # the same object again is harmless
        other = register_family("fake", _FakeFamily("fake", "v2"), replace=True)
        assert get_family("fake") is other
    assert "fake" not in registry.family_names()


def test_base_family_says_what_it_lacks():
    bare = ModelFamily("bare")
    with pytest.raises(NotImplementedError, match="'bare' has no model builder"):
        bare.build_model_chunks(None)
    with pytest.raises(NotImplementedError, match="'bare' has no FLOP count"):
        bare.flops_per_token(get_preset("tiny-biomedlm").model)
    with pytest.raises(NotImplementedError, match="'bare' does not say how it keeps packed segments apart"):
        bare.segment_isolation(get_preset("tiny-biomedlm"))


def test_every_family_says_how_it_keeps_segments_apart(monkeypatch):
    """Attention families mask; Mamba2 with our torch mixer restarts its state at documents (so it packs
    documents but cannot share a prompt between options); with megatron-core's mixer it packs nothing."""
    from megatron_biomed.models.mamba import family as mamba_family

    want = {"gpt2": SegmentIsolation.ATTENTION_MASK, "llama": SegmentIsolation.ATTENTION_MASK,
            "mamba2": SegmentIsolation.STATE_RESET}  # fmt: skip
    assert set(want) == set(registry.family_names())
    for name, isolation in want.items():
        assert get_family(name).segment_isolation(get_preset("tiny-biomedlm")) is isolation
    monkeypatch.setattr(mamba_family, "mamba_ssm_available", lambda: True)
    assert get_family("mamba2").segment_isolation(get_preset("tiny-mamba")) is SegmentIsolation.NONE
    assert [(i.value, i.packs_documents, i.shares_prompt) for i in SegmentIsolation] == [
        ("attention_mask", True, True), ("state_reset", True, False), ("none", False, False)]  # fmt: skip


@pytest.mark.parametrize("preset", ["tiny-biomedlm", "tiny-llama"])
def test_gpt_family_builds_the_model_it_counts(single_rank_parallel, preset):
    cfg = get_preset(preset)
    family = get_family(cfg.model.family)
    (model,) = family.build_model_chunks(cfg)
    from megatron.core.models.gpt import GPTModel

    assert isinstance(model, GPTModel) and model.real_vocab_size == cfg.model.vocab_size
    assert sum(p.numel() for p in model.parameters()) == family.count_parameters(cfg.model, padded_vocab=True).total
