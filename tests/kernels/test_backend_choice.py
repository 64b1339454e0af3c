"""kernels="auto" and the "sdpa" provider.

* the resolver's choice and logged reason on this CPU machine and on faked machines (a GPU without our extension,
  with or without Transformer Engine; with the extension, per precision and head dim): the probes are our
  providers' own (torch.cuda.is_available, csrc_ops' load state, the TE provider's availability), not megatron's;
* the recipe preset with kernels="auto" builds and trains a step on CPU;
* SdpaDotProductAttention against megatron-core's own DotProductAttention (kernels="torch") in float64 on fresh
  random inputs: causal, grouped-query, padding masks, query-key layer scaling, forward and backward; a whole
  model on "sdpa" against the same model on "torch"; its dropout path.
"""

from __future__ import annotations

import dataclasses
import logging

import pytest
import torch
from megatron.core.transformer.dot_product_attention import DotProductAttention
from megatron.core.transformer.enums import AttnMaskType
from megatron.core.transformer.transformer_config import TransformerConfig

from megatron_biomed.config import get_preset
from megatron_biomed.config.training import TrainingConfig
from megatron_biomed.kernels import csrc_ops
from megatron_biomed.kernels.errors import KernelError
from megatron_biomed.kernels.modules import KernelNorm
from megatron_biomed.kernels.providers import SdpaProvider, TransformerEngineProvider
from megatron_biomed.kernels.registry import RunFacts, get_provider, provider_class, resolve_auto
from megatron_biomed.kernels.sdpa import SdpaDotProductAttention

BF16_D64 = RunFacts(precision="bf16", head_dim=64)


@pytest.fixture
def machine(monkeypatch):
    """Fake the machine: ``machine(gpu=, extension=, te=)``."""

    def fake(*, gpu: bool, extension: bool = False, te: bool = False):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
        error = None if extension else "megatron_biomed._C (the CUDA kernels) is not built (fake)"
        monkeypatch.setattr(csrc_ops, "_state", {"loaded": True, "error": error})
        te_why = None if te else "Transformer Engine is not installed (fake)"
        monkeypatch.setattr(TransformerEngineProvider, "unavailable_reason", classmethod(lambda cls: te_why))

    return fake


def test_auto_on_cpu_is_sdpa_with_every_skip_reason(machine, caplog):
    machine(gpu=False, extension=True, te=True)
    r = resolve_auto(BF16_D64)
    assert r.choice == "sdpa"
    assert dict(r.skipped) == {
        "csrc": "no CUDA device (its ops would run the PyTorch fallbacks)",
        "te": "no CUDA device (Transformer Engine runs on GPUs only)",
    }
    with caplog.at_level(logging.INFO, logger="megatron_biomed.kernels.providers"):
        p = get_provider("auto", BF16_D64)
    assert type(p) is SdpaProvider
    assert caplog.messages == [r.describe()]
    assert r.describe().startswith("kernels=auto -> sdpa (PyTorch SDPA")
    assert "; skipped csrc: no CUDA device" in r.describe()


def test_auto_on_a_gpu_without_our_extension_falls_back_instead_of_failing(machine):
    machine(gpu=True, extension=False, te=False)
    r = resolve_auto(BF16_D64)
    assert r.choice == "sdpa"
    assert dict(r.skipped) == {
        "csrc": "megatron_biomed._C (the CUDA kernels) is not built (fake)",
        "te": "Transformer Engine is not installed (fake)",
    }
    assert type(get_provider("auto", BF16_D64)) is SdpaProvider
    with pytest.raises(KernelError, match="not built"):  # naming csrc itself still says what to build
        get_provider("csrc")
    machine(gpu=True, extension=False, te=True)
    assert resolve_auto(BF16_D64).choice == "te"


def test_auto_takes_our_kernels_where_they_are_the_fast_path(machine):
    machine(gpu=True, extension=True, te=True)
    r = resolve_auto(BF16_D64)
    assert (r.choice, r.skipped) == ("csrc", ())
    assert r.describe() == "kernels=auto -> csrc (our CUDA kernels: flash attention and fused norms)"
    for facts, why in (
        (RunFacts(precision="fp32", head_dim=64), "precision fp32"),
        (RunFacts(precision="bf16", head_dim=32), "head_dim 32"),
    ):
        r = resolve_auto(facts)
        assert r.choice == "te" and r.skipped[0][0] == "csrc" and r.skipped[0][1].startswith(why)


def test_auto_skips_choices_without_sequence_parallelism(machine, monkeypatch):
    machine(gpu=False)
    monkeypatch.setattr(SdpaProvider, "unavailable_reason", classmethod(lambda cls: "old torch (fake)"))
    with pytest.raises(KernelError, match="torch: its norms do not support sequence parallelism"):
        resolve_auto(RunFacts(sequence_parallel=True))
    assert resolve_auto(RunFacts()).choice == "torch"


def test_auto_is_only_a_choice_not_modules():
    auto = provider_class("auto")
    assert auto.unavailable_reason() is None and auto.supports_sequence_parallel
    with pytest.raises(KernelError, match="resolved at model build"):
        auto.check_module("KernelNorm")


def _small_recipe(name: str):
    cfg = get_preset(name)
    cfg.model = dataclasses.replace(
        cfg.model, num_layers=2, hidden_size=64, num_attention_heads=4, seq_length=32, vocab_size=256,
        ffn_hidden_size=None if cfg.model.ffn_hidden_size is None else 128,
    )  # fmt: skip
    cfg.train = TrainingConfig(micro_batch_size=2, global_batch_size=2, train_iters=1, precision="fp32")
    cfg.parallel.pipeline_model_parallel_size = 1
    return cfg


def _batch(cfg, seed=0):
    gen = torch.Generator().manual_seed(seed)
    b, s = cfg.train.micro_batch_size, cfg.model.seq_length
    tokens = torch.randint(0, cfg.model.vocab_size, (b, s + 1), generator=gen)
    return tokens[:, :-1], torch.arange(s).expand(b, s), tokens[:, 1:]


def test_biomedlm_recipe_on_auto_builds_and_trains_a_step_on_cpu(single_rank_parallel, machine, caplog):
    from megatron_biomed.models.registry import build_model_chunks

    machine(gpu=False)
    cfg = _small_recipe("biomedlm-2.7b")  # its attention dropout 0.1 runs through SDPA's dropout
    assert cfg.model.kernels == "auto" and cfg.model.attention_dropout > 0
    with caplog.at_level(logging.INFO, logger="megatron_biomed.kernels.providers"):
        (model,) = build_model_chunks(cfg)
    assert any(m.startswith("kernels=auto -> sdpa") for m in caplog.messages)
    layer = model.decoder.layers[1]
    assert isinstance(layer.self_attention.core_attention, SdpaDotProductAttention)
    assert isinstance(layer.input_layernorm, KernelNorm) and layer.input_layernorm.kernels == "sdpa"
    # GPT-2's per-layer scale reaches the SDPA attention (layer 2: 1 / (sqrt(16) * 2))
    assert layer.self_attention.core_attention.total_softmax_scale == pytest.approx(1 / 8)
    tokens, pos, labels = _batch(cfg)

    def eval_loss():
        model.eval()
        with torch.no_grad():
            return model(tokens, pos, None, labels=labels).mean()

    before = eval_loss()
    model.train()
    loss = model(tokens, pos, None, labels=labels).mean()
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.parameters())
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    after = eval_loss()
    assert torch.isfinite(after) and after < before


def test_sdpa_model_matches_torch_model_in_float64(single_rank_parallel):
    from megatron_biomed.models.registry import build_model_chunks
    from megatron_biomed.parallel import cpu

    cfg = get_preset("tiny-llama")  # GQA (4 heads, 2 groups), RoPE, RMSNorm, SwiGLU
    cfg.model = dataclasses.replace(cfg.model, num_layers=2, seq_length=32, vocab_size=256)
    cfg.parallel.pipeline_model_parallel_size = 1
    cpu.model_parallel_manual_seed(3)
    ref = build_model_chunks(cfg)[0].double()
    cfg.model.kernels = "sdpa"
    ours = build_model_chunks(cfg)[0].double()
    ours.load_state_dict(ref.state_dict(), strict=True)  # same parameter names on both choices
    tokens, pos, labels = _batch(cfg, seed=1)
    results = []
    for model in (ref, ours):
        loss = model(tokens, pos, None, labels=labels).mean()
        loss.backward()
        results.append((loss.detach(), {n: p.grad for n, p in model.named_parameters()}))
    (ref_loss, ref_grads), (loss, grads) = results
    torch.testing.assert_close(loss, ref_loss, rtol=1e-12, atol=0)
    for n, g in ref_grads.items():
        torch.testing.assert_close(grads[n], g, rtol=1e-9, atol=1e-12, msg=n)


def _attention_config(**kw) -> TransformerConfig:
    base = dict(
        num_layers=2, hidden_size=64, num_attention_heads=4, num_query_groups=2, attention_dropout=0.0,
        use_cpu_initialization=True, params_dtype=torch.float64, masked_softmax_fusion=False,
    )  # fmt: skip
    return TransformerConfig(**(base | kw))


def _qkv(sq, sk, b, heads, groups, d, seed):
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64, requires_grad=True)

    return rand(sq, b, heads, d), rand(sk, b, groups, d), rand(sk, b, groups, d)


def _run(module, q, k, v, mask):
    out = module(q, k, v, mask)
    out.backward(torch.ones_like(out).mul_(torch.arange(out.numel(), dtype=out.dtype).view_as(out).sin()))
    grads = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    return out.detach(), grads


@pytest.mark.parametrize("case", ["causal", "causal-gqa-layer-scaling", "padding-gqa", "causal-given-mask"])
def test_sdpa_attention_matches_megatron_attention_float64(single_rank_parallel, case):
    groups = 4 if case == "causal" else 2
    config = _attention_config(num_query_groups=groups, apply_query_key_layer_scaling="layer-scaling" in case)
    mask_type = AttnMaskType.padding if case.startswith("padding") else AttnMaskType.causal
    args = dict(config=config, layer_number=3, attn_mask_type=mask_type, attention_type="self")
    ref, ours = DotProductAttention(**args), SdpaDotProductAttention(**args)
    sq, b = 24, 2
    q, k, v = _qkv(sq, sq, b, 4, groups, 16, seed=sum(map(ord, case)))
    mask = None
    if case == "padding-gqa":  # random key padding, no query row fully masked
        gen = torch.Generator().manual_seed(7)
        mask = torch.rand(b, 1, sq, sq, generator=gen) < 0.3
        mask[..., 0] = False
    elif case == "causal-given-mask":  # a given mask is used as given (megatron-core's rule), here not causal
        doc = torch.arange(sq) // 10
        mask = (doc[:, None] != doc[None, :])[None, None]
    out_ref, grads_ref = _run(ref, q, k, v, mask)
    out, grads = _run(ours, q, k, v, mask)
    torch.testing.assert_close(out, out_ref, rtol=1e-10, atol=1e-12)
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-12)


def test_sdpa_dropout_runs_under_the_rng_tracker(single_rank_parallel):
    from megatron_biomed.parallel import cpu

    config = _attention_config(attention_dropout=0.5)
    module = SdpaDotProductAttention(config, 1, AttnMaskType.causal, "self")
    q, k, v = _qkv(16, 16, 2, 4, 2, 16, seed=11)
    module.eval()
    plain = module(q, k, v, None)
    module.train()
    outs = []
    for _ in range(2):
        cpu.model_parallel_manual_seed(5)
        state = torch.get_rng_state()
        outs.append(module(q, k, v, None))
        assert torch.equal(torch.get_rng_state(), state)  # the tracker's generator drew the mask, not the default
    out = outs[0]
    assert torch.isfinite(out).all() and not torch.allclose(out, plain)
    torch.testing.assert_close(outs[1], out, rtol=0, atol=0)  # the tracker's seed reproduces the mask
    out.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))


def test_segments_are_not_packed_where_the_backend_ignores_a_given_mask(machine):
    """SFT packing and shared-prompt scoring rely on the attention mask; Transformer Engine's causal layers ignore a
    given mask, so a GPT on te (named, or what auto resolves to) keeps one segment per row."""
    from megatron_biomed.models.gpt.family import GPT2
    from megatron_biomed.models.registry import SegmentIsolation

    def on(kernels: str):
        cfg = get_preset("tiny-biomedlm")
        cfg.model = dataclasses.replace(cfg.model, kernels=kernels)
        return cfg

    assert GPT2.segment_isolation(on("sdpa")) is SegmentIsolation.ATTENTION_MASK
    assert GPT2.segment_isolation(on("te")) is SegmentIsolation.NONE
    machine(gpu=True, extension=False, te=True)  # auto -> te
    assert GPT2.segment_isolation(on("auto")) is SegmentIsolation.NONE
    machine(gpu=False, extension=False, te=False)  # auto -> sdpa
    assert GPT2.segment_isolation(on("auto")) is SegmentIsolation.ATTENTION_MASK
