"""megatron-core's fusions per machine (models/fusions.py) and the attention masks no longer built.

The decision table is checked on faked machines (FusionProbes: what the machine has); transformer_config is checked
with the probe faked to a full GPU machine, so megatron-core's own config checks run on the flags it sets. The fused
bias-GELU that ``gelu_tanh`` gets is checked against the activation it replaces, in float64.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from megatron_biomed.config import get_preset
from megatron_biomed.models import common
from megatron_biomed.models.fusions import FUSION_FLAGS, FusionProbes, decide_fusions

FULL_GPU = FusionProbes(gpu=True, triton=True, apex_grad_accum=True, megatron_softmax=True, te_rope=True)
BIOMEDLM = get_preset("biomedlm-2.7b").model  # gelu_tanh with biases, learned positions
BIOLLM = get_preset("biollm-70b").model  # SwiGLU without biases, RoPE


def _on(choice) -> set[str]:
    return {f for f, on in choice.flags.items() if on}


def test_cpu_turns_every_fusion_off_with_its_reason():
    choice = decide_fusions(BIOLLM, dataclasses.replace(FULL_GPU, gpu=False))
    assert set(choice.flags) == set(FUSION_FLAGS) and _on(choice) == set()
    assert all(choice.off[f].startswith("no GPU") for f in FUSION_FLAGS)
    assert choice.activation_func is None


def test_a_full_gpu_machine_turns_on_what_each_model_supports():
    llama = decide_fusions(BIOLLM, FULL_GPU)
    assert _on(llama) == set(FUSION_FLAGS) - {"persist_layer_norm"}
    assert set(llama.off) == {"persist_layer_norm"} and llama.activation_func is None
    gpt2 = decide_fusions(BIOMEDLM, FULL_GPU)
    assert _on(gpt2) == set(FUSION_FLAGS) - {"persist_layer_norm", "apply_rope_fusion"}
    assert gpt2.off["apply_rope_fusion"] == "the model has no RoPE"
    assert gpt2.activation_func is F.gelu  # what megatron's check wants for its fused (tanh) bias-GELU


@pytest.mark.parametrize(
    "model_changes, probe_changes, off, why",
    [
        ({"activation": "gelu"}, {}, {"bias_activation_fusion"}, "tanh approximation"),
        ({"add_bias_linear": False}, {}, {"bias_activation_fusion"}, "needs the linear bias"),
        ({}, {"triton": False}, {"bias_activation_fusion", "bias_dropout_fusion", "cross_entropy_loss_fusion"},
         "needs Triton"),
        ({}, {"apex_grad_accum": False}, {"gradient_accumulation_fusion"}, "fused_weight_gradient_mlp_cuda"),
        ({}, {"megatron_softmax": False}, {"masked_softmax_fusion"}, "scaled_masked_softmax_cuda"),
        ({}, {"te_rope": False}, {"apply_rope_fusion"}, "Transformer Engine"),
    ],
)  # fmt: skip
def test_each_missing_need_turns_off_only_its_fusions(model_changes, probe_changes, off, why):
    base = dataclasses.replace(BIOMEDLM, position_embedding_type="rope")  # every fusion applies on a full machine
    choice = decide_fusions(dataclasses.replace(base, **model_changes), dataclasses.replace(FULL_GPU, **probe_changes))
    baseline = decide_fusions(base, FULL_GPU)
    assert _on(baseline) == set(FUSION_FLAGS) - {"persist_layer_norm"}
    assert _on(baseline) - _on(choice) == off
    assert all(why in choice.off[f] for f in off)
    if "bias_activation_fusion" in off:
        assert choice.activation_func is None  # the model's own activation stays


def test_transformer_config_applies_the_decision(monkeypatch, caplog):
    cfg = get_preset("tiny-biomedlm")
    monkeypatch.setattr(common, "probe_fusions", lambda: FULL_GPU)
    monkeypatch.setattr(common, "_logged", set())
    with caplog.at_level("INFO", logger=common.__name__):
        tconfig = common.transformer_config(cfg)  # megatron-core's own checks pass on these flags
    want = decide_fusions(cfg.model, FULL_GPU)
    assert {f: getattr(tconfig, f) for f in FUSION_FLAGS} == want.flags
    assert tconfig.activation_func is F.gelu and tconfig.cross_entropy_fusion_impl == "native"
    assert caplog.messages == [want.describe()]
    assert "off: apply_rope_fusion: the model has no RoPE; persist_layer_norm: only Apex" in want.describe()
    monkeypatch.setattr(common, "probe_fusions", lambda: dataclasses.replace(FULL_GPU, gpu=False))
    tconfig = common.transformer_config(cfg)
    assert not any(getattr(tconfig, f) for f in FUSION_FLAGS)
    assert tconfig.activation_func(torch.tensor([1.0])) == F.gelu(torch.tensor([1.0]), approximate="tanh")


def test_the_fused_bias_gelu_is_gelu_tanh_in_float64():
    from megatron.core.fusions import fused_bias_gelu

    # the function megatron's jit_fuser compiles (compiling it on CPU would only cost time here)
    bias_gelu = getattr(fused_bias_gelu.bias_gelu, "_torchdynamo_orig_callable", fused_bias_gelu.bias_gelu)
    gen = torch.Generator().manual_seed(0)
    y = torch.randn(64, 32, generator=gen, dtype=torch.float64) * 4
    bias = torch.randn(32, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(bias_gelu(bias, y), F.gelu(y + bias, approximate="tanh"), rtol=1e-8, atol=1e-9)


# --- attention masks: built only where a path reads them ---------------------------------------------------


def test_pretraining_samples_carry_a_mask_only_when_documents_are_kept_apart(monkeypatch):
    from megatron.core.datasets import gpt_dataset as mcore_gpt_dataset

    from megatron_biomed.data import gpt_dataset

    configs = []

    class Builder:  # what build_gpt_datasets hands megatron-core's builder (building them costs seconds)
        def __init__(self, cls, sizes, is_built_on_rank, config):
            configs.append(config)

        def build(self):
            return None, None, None

    monkeypatch.setattr(gpt_dataset, "BlendedMegatronDatasetBuilder", Builder)
    for reset in (False, True):
        gpt_dataset.build_gpt_datasets(
            [], seq_length=16, seed=1, num_samples=(2, 0, 0), tokens=gpt_dataset.TokenInfo(vocab_size=100, eod=0),
            mock=True, reset_attention_mask=reset,
        )  # fmt: skip
    assert [(c.reset_attention_mask, c.create_attention_mask) for c in configs] == [(False, False), (True, True)]
    # megatron-core's GPTDataset then makes no [1, S, S] mask for a sample (and leaves the key out)
    tokens = torch.tensor([5, 0, 7, 8])
    masks = [mcore_gpt_dataset._get_ltor_masks_and_position_ids(tokens, 0, False, False, False, c)[0] for c in (0, 1)]
    assert masks[0] is None and masks[1].shape == (1, 4, 4)


def test_scoring_rows_carry_no_mask():
    from megatron_biomed.models.heads import flatten_choices

    batch = {"tokens": torch.zeros(2, 3, 8, dtype=torch.long), "last_index": torch.zeros(2, 3, dtype=torch.long)}
    flat = flatten_choices(batch, 8)
    assert set(flat) == {"tokens", "position_ids", "last_index"} and flat["tokens"].shape == (6, 8)
