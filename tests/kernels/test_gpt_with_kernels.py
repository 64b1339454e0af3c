"""End to end: a tiny megatron-core GPTModel whose norms and core attention run the csrc kernels
(on the CPU emulator, kernels="emu") gives the same loss and gradients as megatron-core's local
PyTorch spec (kernels="torch") with the same weights.

2 layers, hidden 64, 4 heads in 2 query groups (GQA), sequence 32, fp32, LayerNorm and RMSNorm.
kv_channels 64 runs the flash attention kernels; the default head dim 16 (not a flash head dim)
runs the fused causal softmax kernels around PyTorch matmuls. The kernels are reached either through
``megatron_biomed._emu`` (the "emu" provider's primitives) or through the real torch bindings of csrc/torch compiled
against the emulator (``torch.ops.megatron_biomed_emu``, see build_cuda.build_torch_emu).
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("megatron.core")

SEQ, BATCH, VOCAB = 32, 2, 128


def _config(normalization: str, kv_channels: int | None):
    from megatron.core.transformer.transformer_config import TransformerConfig

    return TransformerConfig(
        num_layers=2,
        hidden_size=64,
        num_attention_heads=4,
        num_query_groups=2,
        kv_channels=kv_channels,
        ffn_hidden_size=128,
        normalization=normalization,
        gated_linear_unit=normalization == "RMSNorm",
        activation_func=torch.nn.functional.silu if normalization == "RMSNorm" else torch.nn.functional.gelu,
        add_bias_linear=normalization == "LayerNorm",
        hidden_dropout=0.0,
        attention_dropout=0.0,
        use_cpu_initialization=True,
        params_dtype=torch.float32,
        gradient_accumulation_fusion=False,
        bias_activation_fusion=False,
        bias_dropout_fusion=False,
        masked_softmax_fusion=False,
        apply_rope_fusion=False,
        persist_layer_norm=False,
        layernorm_epsilon=1e-5,
    )


def _model(config, kernels: str, normalization: str):
    from megatron.core.models.gpt import GPTModel

    from megatron_biomed.models.gpt.specs import gpt_block_spec

    return GPTModel(
        config=config,
        transformer_layer_spec=gpt_block_spec(config, normalization=normalization, kernels=kernels),
        vocab_size=VOCAB,
        max_sequence_length=SEQ,
        position_embedding_type="rope" if normalization == "RMSNorm" else "learned_absolute",
    )


def _loss_and_grads(model, batch):
    tokens, position_ids, mask, labels = batch
    model.zero_grad(set_to_none=True)
    loss = model(tokens, position_ids, mask, labels=labels).mean()
    loss.backward()
    return loss.detach(), {n: p.grad.detach().clone() for n, p in model.named_parameters()}


class _CountingOps:
    """The bound emulated ops, counting calls per op."""

    def __init__(self, ops):
        self.ops, self.calls = ops, collections.Counter()

    def __getattr__(self, name):
        self.calls[name] += 1
        return getattr(self.ops, name)


@pytest.fixture(scope="module")
def bound_emu_ops():
    root = Path(__file__).resolve().parents[2]
    sys.path.insert(0, str(root / "csrc"))
    import build_cuda

    torch.ops.load_library(str(build_cuda.build_torch_emu(root)))
    return torch.ops.megatron_biomed_emu


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


@pytest.mark.parametrize("normalization", ["LayerNorm", "RMSNorm"])
@pytest.mark.parametrize("kv_channels", [64, None], ids=["flash-d64", "softmax-d16"])
@pytest.mark.parametrize("via", ["emu-module", "torch-bindings"])
def test_emu_kernels_match_torch(
    single_rank_parallel, emu_module, request, monkeypatch, via, normalization, kv_channels
):
    from megatron_biomed.kernels.modules import KernelDotProductAttention, KernelNorm
    from megatron_biomed.kernels.providers import EmuProvider

    if via == "torch-bindings":
        counting = _CountingOps(request.getfixturevalue("bound_emu_ops"))
        monkeypatch.setattr(EmuProvider, "primitives", counting)
    else:
        counting = _CountingOps(EmuProvider.primitives)
        monkeypatch.setattr(EmuProvider, "primitives", counting)

    config = _config(normalization, kv_channels)
    torch.manual_seed(1234)
    ref = _model(config, "torch", normalization)
    emu = _model(config, "emu", normalization)
    emu.load_state_dict(ref.state_dict(), strict=True)  # same weights

    # The emu model really is built from our modules (final norm included).
    kinds = {type(m) for m in emu.modules()}
    assert KernelNorm in kinds and KernelDotProductAttention in kinds
    assert isinstance(emu.decoder.final_layernorm, KernelNorm)
    assert not any(isinstance(m, (KernelNorm, KernelDotProductAttention)) for m in ref.modules())
    attention = [m for m in emu.modules() if isinstance(m, KernelDotProductAttention)]

    g = torch.Generator().manual_seed(99)
    tokens = torch.randint(0, VOCAB, (BATCH, SEQ), generator=g)
    labels = torch.randint(0, VOCAB, (BATCH, SEQ), generator=g)
    position_ids = torch.arange(SEQ).unsqueeze(0).expand(BATCH, -1)
    mask = None  # causal layers: pretraining passes no mask (a given one is used as given)
    batch = (tokens, position_ids, mask, labels)

    ref_loss, ref_grads = _loss_and_grads(ref, batch)
    emu_loss, emu_grads = _loss_and_grads(emu, batch)
    # every norm (2 per layer + the final one) and every attention ran forward and backward
    norm = "layer_norm" if normalization == "LayerNorm" else "rms_norm"
    attn = (
        ("flash_attn_fwd", "flash_attn_bwd")
        if kv_channels == 64
        else ("scaled_causal_softmax_fwd", "scaled_softmax_bwd")
    )
    expected_calls = {f"{norm}_fwd": 5, f"{norm}_bwd": 5, attn[0]: 2, attn[1]: 2}
    assert dict(counting.calls) == expected_calls
    expected_path = "flash attention" if kv_channels == 64 else "fused softmax"
    assert all(m._logged_paths == {expected_path} for m in attention)

    assert torch.isfinite(ref_loss) and abs(emu_loss.item() - ref_loss.item()) <= 1e-5 * abs(ref_loss.item())
    assert emu_grads.keys() == ref_grads.keys()
    errors = {n: _rel(emu_grads[n], ref_grads[n]) for n in ref_grads}
    worst = max(errors, key=errors.get)
    assert errors[worst] <= 1e-5, f"gradient of {worst} differs by {errors[worst]:.2e} (relative)"
    assert all(ref_grads[n].abs().sum() > 0 for n in ref_grads if "layernorm" in n or "linear" in n)


def test_csrc_without_gpu_runs_on_torch(single_rank_parallel, caplog):
    """kernels="csrc" on a machine without a GPU builds the same model and falls back to PyTorch."""
    from megatron_biomed.kernels import providers

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: kernels='csrc' runs the CUDA kernels there")
    config = _config("RMSNorm", 64)
    torch.manual_seed(5)
    ref = _model(config, "torch", "RMSNorm")
    csrc = _model(config, "csrc", "RMSNorm")
    csrc.load_state_dict(ref.state_dict(), strict=True)
    tokens = torch.randint(0, VOCAB, (BATCH, SEQ))
    position_ids = torch.arange(SEQ).unsqueeze(0).expand(BATCH, -1)
    mask = None  # causal layers: pretraining passes no mask (a given one is used as given)
    batch = (tokens, position_ids, mask, tokens)
    providers._fallbacks_logged.clear()
    with caplog.at_level("WARNING", logger=providers.__name__):
        loss, grads = _loss_and_grads(csrc, batch)
    ref_loss, ref_grads = _loss_and_grads(ref, batch)
    assert abs(loss.item() - ref_loss.item()) <= 1e-5 * abs(ref_loss.item())
    assert max(_rel(grads[n], ref_grads[n]) for n in ref_grads) <= 1e-5
    fallbacks = [r.getMessage() for r in caplog.records if "runs on PyTorch" in r.getMessage()]
    assert sorted(m.split(":")[1].split()[0] for m in fallbacks) == ["flash_attention", "rms_norm"]
