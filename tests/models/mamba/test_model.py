"""The mamba2 family: registered, counted (the five public sizes), built (numel = count), equal to transformers'
Mamba2ForCausalLM on the same weights, layout rules, cached decoding."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from megatron_biomed.config import get_preset
from megatron_biomed.models.registry import count_parameters, get_family
from megatron_biomed.models.registry import flops_per_token as model_flops_per_token
from megatron_biomed.parallel.layout import layout_problems

# state-spaces/mamba2-{130m..2.7b}: parameters as stored (embedding padded to 50,288 rows, tied)
PUBLIC_SIZES = {"130m": 129.0, "370m": 368.3, "780m": 780.2, "1.3b": 1343.8, "2.7b": 2702.6}


@pytest.mark.parametrize("size", list(PUBLIC_SIZES))
def test_presets_match_the_public_checkpoints(size):
    m = get_preset(f"biomamba-{size}").model
    assert m.family == "mamba2" and m.padded_vocab_size(1) == 50288
    total = count_parameters(m, padded_vocab=True).total
    assert round(total / 1e6, 1) == PUBLIC_SIZES[size]
    assert model_flops_per_token(m) > 6 * (total - m.padded_vocab_size(1) * m.hidden_size)


@pytest.mark.parametrize("preset", ["tiny-mamba", "biomamba-130m"])
def test_built_model_has_the_counted_parameters(single_rank_parallel, preset):
    cfg = get_preset(preset)
    cfg.train.precision = "fp32"
    family = get_family("mamba2")
    (model,) = family.build_model_chunks(cfg)
    from megatron.core.models.hybrid.hybrid_model import HybridModel

    assert isinstance(model, HybridModel)
    assert sum(p.numel() for p in model.parameters()) == family.count_parameters(cfg.model, padded_vocab=True).total
    # models/mamba/stack.py: megatron-core's HybridStack builds a Transformer Engine final norm
    # (models/hybrid/hybrid_block.py:215); ours is a torch RMSNorm under the same name
    assert isinstance(model.decoder.final_norm, torch.nn.RMSNorm)
    if preset == "biomamba-130m":
        assert sum(p.numel() for p in model.parameters()) == 128_989_632


def test_stock_hybrid_stack_still_needs_transformer_engine():
    """If this fails, megatron-core builds its final norm without TE and models/mamba/stack.py can go."""
    from megatron.core.extensions import transformer_engine as te

    if te.HAVE_TE:
        pytest.skip("Transformer Engine is installed")
    with pytest.raises(ImportError):
        te.TENorm(config=None, hidden_size=8)


def _layout(preset: str, world: int, **parallel):
    cfg = get_preset(preset)
    cfg.parallel = dataclasses.replace(cfg.parallel, **parallel)
    return layout_problems(cfg, world)


def test_layout_rules():
    assert _layout("tiny-mamba", 2, tensor_model_parallel_size=2) == []
    problems = _layout("biomamba-130m", 2, tensor_model_parallel_size=2)
    assert len(problems) == 1 and "1 B/C group" in problems[0] and "tensor_model_parallel_size=1" in problems[0]
    tp4 = _layout("tiny-mamba", 4, tensor_model_parallel_size=4)
    assert any("must divide model.mamba_num_groups (2)" in p for p in tp4)
    cfg = get_preset("tiny-mamba")
    cfg.model.mamba_num_groups = 3
    assert any("must divide the SSM heads (8)" in p for p in layout_problems(cfg, 1))
    assert _layout("biomamba-2.7b", 64, pipeline_model_parallel_size=4) == []


def _hf_model(cfg, model):
    """transformers' Mamba2ForCausalLM (its PyTorch path) with ``model``'s weights."""
    transformers = pytest.importorskip("transformers")
    m = cfg.model
    hf_cfg = transformers.Mamba2Config(
        vocab_size=m.padded_vocab_size(1), hidden_size=m.hidden_size, num_hidden_layers=m.num_layers,
        state_size=m.mamba_state_dim, expand=m.mamba_expand, head_dim=m.mamba_head_dim,
        num_heads=m.mamba_expand * m.hidden_size // m.mamba_head_dim, n_groups=m.mamba_num_groups,
        conv_kernel=m.mamba_conv_kernel, chunk_size=m.mamba_chunk_size, use_bias=False, use_conv_bias=True,
        layer_norm_epsilon=m.layernorm_epsilon, rms_norm=True, residual_in_fp32=True, tie_word_embeddings=True,
        time_step_limit=(0.0, float("inf")),
    )  # fmt: skip
    hf = transformers.Mamba2ForCausalLM(hf_cfg).eval()
    ours = model.state_dict()
    sd = {"backbone.embeddings.weight": ours["embedding.word_embeddings.weight"],
          "backbone.norm_f.weight": ours["decoder.final_norm.weight"],
          "lm_head.weight": ours["embedding.word_embeddings.weight"]}  # fmt: skip
    for i in range(m.num_layers):
        src, dst = f"decoder.layers.{i}.", f"backbone.layers.{i}."
        sd[dst + "norm.weight"] = ours[src + "norm.weight"]
        for a, b in (("in_proj.weight", "in_proj.weight"), ("conv1d_weight", "conv1d.weight"),
                     ("conv1d_bias", "conv1d.bias"), ("dt_bias", "dt_bias"), ("A_log", "A_log"), ("D", "D"),
                     ("norm.weight", "norm.weight"), ("out_proj.weight", "out_proj.weight")):  # fmt: skip
            sd[dst + "mixer." + b] = ours[src + "mixer." + a]
    missing, unexpected = hf.load_state_dict(sd, strict=False)
    assert not unexpected and all("lm_head" in k for k in missing), (missing, unexpected)
    return hf


def test_logits_and_gradients_equal_transformers(single_rank_parallel):
    """fp32 on both sides, sequence 40 (not a multiple of the chunk, 16). The mixers' projections are scaled up
    so that they move the logits (by up to ~1.8; at initialisation the residual stream is mostly the embedding).
    Measured: identical logits, gradient cosines >= 1 - 3e-7, gradient norms within 5e-7."""
    cfg = get_preset("tiny-mamba")
    (model,) = get_family("mamba2").build_model_chunks(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "out_proj" in name or "in_proj" in name:
                p.mul_(30 if "out_proj" in name else 10)
    hf = _hf_model(cfg, model)
    tokens = torch.randint(0, cfg.model.vocab_size, (2, 40), generator=torch.Generator().manual_seed(0))
    position_ids = torch.arange(40)[None].expand(2, -1)
    logits = model(tokens, position_ids, None, runtime_gather_output=True)  # [b, s, v]
    hf_logits = hf(tokens).logits
    scale = hf_logits.abs().max()
    assert (logits - hf_logits).abs().max() <= 1e-5 * scale
    # the same loss gradient (direction and size) on every mixer parameter of layer 0
    model(tokens, position_ids, None, labels=tokens).mean().backward()
    # labels=tokens: megatron-core's loss at position t is against labels[t]; the same loss on HF's logits
    hf_loss = torch.nn.functional.cross_entropy(hf_logits.reshape(-1, hf_logits.size(-1)), tokens.reshape(-1))
    hf_loss.backward()
    for ours, theirs in (("mixer.in_proj.weight", "mixer.in_proj.weight"), ("mixer.A_log", "mixer.A_log"),
                         ("mixer.conv1d_weight", "mixer.conv1d.weight"), ("norm.weight", "norm.weight")):  # fmt: skip
        g = dict(model.named_parameters())[f"decoder.layers.0.{ours}"].grad
        h = dict(hf.named_parameters())[f"backbone.layers.0.{theirs}"].grad
        cos = torch.nn.functional.cosine_similarity(g.flatten(), h.flatten(), dim=0)
        assert cos > 1 - 1e-6 and math.isclose(g.norm(), h.norm(), rel_tol=1e-4), (ours, cos, g.norm(), h.norm())


def test_cached_decoding_equals_full_forward(single_rank_parallel):
    from megatron.core.inference.contexts import StaticInferenceContext

    cfg = get_preset("tiny-mamba")
    (model,) = get_family("mamba2").build_model_chunks(cfg)
    model = model.eval()
    tokens = torch.randint(0, cfg.model.vocab_size, (2, 24), generator=torch.Generator().manual_seed(1))
    pos = torch.arange(24)[None].expand(2, -1)
    with torch.no_grad():
        full = model(tokens, pos, None, runtime_gather_output=True)
        ctx = StaticInferenceContext(2, 24)
        step = [model(tokens[:, :10], pos[:, :10], None, inference_context=ctx, runtime_gather_output=True)]
        ctx.sequence_len_offset = 10
        for t in range(10, 24):
            step.append(model(tokens[:, t:t + 1], pos[:, t:t + 1], None, inference_context=ctx,
                              runtime_gather_output=True))  # fmt: skip
            ctx.sequence_len_offset += 1
    got = torch.cat(step, dim=1)
    assert (got - full).abs().max() <= 1e-5 * full.abs().max()


def test_packed_documents_reset_with_reset_position_ids(single_rank_parallel):
    """data.reset_position_ids: documents packed in one row (positions restart at 0) give the logits of the
    same documents run alone."""
    cfg = get_preset("tiny-mamba")
    cfg.data.reset_position_ids = True
    (model,) = get_family("mamba2").build_model_chunks(cfg)
    model.eval()
    lengths = [13, 30, 1, 20]
    tokens = torch.randint(0, cfg.model.vocab_size, (1, sum(lengths)), generator=torch.Generator().manual_seed(2))
    position_ids = torch.cat([torch.arange(n) for n in lengths])[None]
    with torch.no_grad():
        packed = model(tokens, position_ids, None, runtime_gather_output=True)
        start = 0
        for n in lengths:
            alone = model(tokens[:, start:start + n], torch.arange(n)[None], None, runtime_gather_output=True)
            diff = (packed[:, start:start + n] - alone).abs().max()
            assert diff <= 1e-5 * alone.abs().max(), f"document at {start}: {diff}"
            start += n
        model.reset_at_documents = False  # without resets the later documents differ: the test is not vacuous
        leaky = model(tokens, position_ids, None, runtime_gather_output=True)
    assert (leaky[:, 13:43] - packed[:, 13:43]).abs().max() > 1e-3


def test_rows_of_one_document_take_the_plain_path(single_rank_parallel):
    """The builder always enables the document reset (our mixer), also without data.reset_position_ids (SFT packs
    documents behind per-document position ids). Rows whose position ids never return to 0 (pretraining without
    data.reset_position_ids, evaluation) compute exactly what the model computes without resets; a restart in
    one row of the batch resets that row only."""
    cfg = get_preset("tiny-mamba")
    assert not cfg.data.reset_position_ids
    (model,) = get_family("mamba2").build_model_chunks(cfg)
    assert model.reset_at_documents
    model.eval()
    tokens = torch.randint(0, cfg.model.vocab_size, (2, 40), generator=torch.Generator().manual_seed(5))
    arange = torch.arange(40)[None].expand(2, -1)
    with torch.no_grad():
        reset = model(tokens, arange, None, runtime_gather_output=True)
        model.reset_at_documents = False
        plain = model(tokens, arange, None, runtime_gather_output=True)
        model.reset_at_documents = True
        restart = torch.stack([torch.arange(40), torch.cat([torch.arange(15), torch.arange(25)])])
        mixed = model(tokens, restart, None, runtime_gather_output=True)
        second = model(tokens[1:, 15:], torch.arange(25)[None], None, runtime_gather_output=True)
    assert torch.equal(reset, plain)
    assert (mixed[0] - plain[0]).abs().max() <= 1e-5 * plain.abs().max()
    assert (mixed[1, 15:] - second[0]).abs().max() <= 1e-5 * second.abs().max()
    assert (mixed[1, 15:] - plain[1, 15:]).abs().max() > 1e-3


def test_bf16_trains_a_step(single_rank_parallel):
    """bf16 weights (Float16Module) with the residual stream in fp32: the final norm hands the output layer
    bf16 (models/mamba/stack.py), and the loss is near fp32's."""
    cfg = get_preset("tiny-mamba")
    tokens = torch.randint(0, cfg.model.vocab_size, (2, 32), generator=torch.Generator().manual_seed(3))
    pos = torch.arange(32)[None].expand(2, -1)
    losses = {}
    for precision in ("fp32", "bf16"):
        cfg.train.precision = precision
        torch.manual_seed(0)
        from megatron_biomed.parallel import cpu

        cpu.model_parallel_manual_seed(1234)
        (model,) = get_family("mamba2").build_model_chunks(cfg)
        loss = model(tokens, pos, None, labels=tokens).float().mean()
        loss.backward()
        losses[precision] = loss.item()
    assert abs(losses["bf16"] - losses["fp32"]) < 0.05 * losses["fp32"]


def test_generation_with_the_recurrent_state_equals_without(single_rank_parallel):
    """megatron_biomed.inference.generate: one step per new token on the cached conv/SSM states gives the same
    greedy continuation and logits as re-running the whole prefix (prompts of different lengths)."""
    from megatron_biomed.inference.generate import SamplingConfig, generate

    cfg = get_preset("tiny-mamba")
    (model,) = get_family("mamba2").build_model_chunks(cfg)
    prompts = [[5, 17, 300, 2, 9], [44, 3]]
    runs = {}
    for use_cache in (True, False):
        logits: list = []
        out = generate(model, prompts, SamplingConfig(max_new_tokens=8), vocab_size=cfg.model.vocab_size,
                       max_length=cfg.model.seq_length, use_cache=use_cache, keep_logits=logits)  # fmt: skip
        runs[use_cache] = ([r.ids for r in out], torch.stack(logits))
    assert runs[True][0] == runs[False][0]
    assert (runs[True][1] - runs[False][1]).abs().max() <= 1e-5 * runs[False][1].abs().max()


def test_output_processor_gets_the_final_norm_hidden_states(single_rank_parallel):
    """GPTModel's output_processor hook (the fine-tuning heads use it) on our HybridModel: the hook gets the
    final-norm hidden states [s, b, h] whose output layer gives the usual logits. (tools/finetune.py --task sft
    and --task mc train tiny-mamba through it.)"""
    cfg = get_preset("tiny-mamba")
    (model,) = get_family("mamba2").build_model_chunks(cfg)
    tokens = torch.randint(0, cfg.model.vocab_size, (2, 16), generator=torch.Generator().manual_seed(4))
    pos = torch.arange(16)[None].expand(2, -1)
    seen = {}

    def process(*, hidden_states, output_layer, output_weight, config, **_):
        seen["h"] = hidden_states
        return output_layer(hidden_states, weight=output_weight)[0].transpose(0, 1)

    via_hook = model(tokens, pos, None, output_processor=process)
    assert seen["h"].shape == (16, 2, cfg.model.hidden_size) and model.post_process
    assert torch.equal(via_hook, model(tokens, pos, None))


def test_loss_is_over_the_real_vocabulary(single_rank_parallel):
    """A vocabulary padded by 11 rows: the language-model loss is the cross entropy over the real ids only
    (float64 reference on the same logits), and the padding rows of the (tied) embedding get no gradient."""
    cfg = get_preset("tiny-mamba")
    cfg.model.vocab_size = cfg.model.padded_vocab_size(1) - 11
    (model,) = get_family("mamba2").build_model_chunks(cfg)
    v = cfg.model.vocab_size
    tokens = torch.randint(0, v, (2, 24), generator=torch.Generator().manual_seed(4))
    position_ids = torch.arange(24)[None].expand(2, -1)
    with torch.no_grad():
        logits = model(tokens, position_ids, None, runtime_gather_output=True).double()
    want = torch.nn.functional.cross_entropy(logits[..., :v].reshape(-1, v), tokens.reshape(-1))
    loss = model(tokens, position_ids, None, labels=tokens).mean()
    assert math.isclose(loss.item(), want.item(), rel_tol=1e-6), (loss.item(), want.item())
    loss.backward()
    grad = model.embedding.word_embeddings.weight.grad
    assert grad[v:].abs().max() == 0 and grad[:v].abs().max() > 0
