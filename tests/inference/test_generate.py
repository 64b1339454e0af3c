"""Generation: greedy equals transformers' generate token for token; the KV cache changes no logit."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

FAMILIES = ("gpt2", "llama")
PROMPTS = [[5, 17, 42, 7, 99], [3, 1, 4, 1, 5, 9, 2, 6, 5], [250, 8, 13]]  # different lengths, one batch


def _ours(family, exported):
    from megatron_biomed.inference.loading import load_model

    return load_model(exported[family][0])


@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_equals_transformers_generate(exported, family):
    from transformers import AutoModelForCausalLM

    from megatron_biomed.inference.generate import SamplingConfig, generate

    model, cfg = _ours(family, exported)
    new = 12
    ours = generate(
        model, PROMPTS, SamplingConfig(max_new_tokens=new), vocab_size=cfg.model.vocab_size,
        max_length=cfg.model.seq_length,
    )  # fmt: skip
    hf = AutoModelForCausalLM.from_pretrained(exported[family][1]).eval()
    for prompt, g in zip(PROMPTS, ours):
        ids = torch.tensor([prompt])
        want = hf.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=new,
                           min_new_tokens=new, pad_token_id=0)[0, len(prompt):].tolist()  # fmt: skip
        assert g.ids == want, f"{family} prompt {prompt}: ours {g.ids} vs transformers {want}"
        assert g.finish_reason == "length"


@pytest.mark.parametrize("family", FAMILIES)
def test_cache_changes_no_logit(exported, family):
    from megatron_biomed.inference.generate import SamplingConfig, generate

    model, cfg = _ours(family, exported)
    kw = dict(vocab_size=cfg.model.vocab_size, max_length=cfg.model.seq_length)
    s = SamplingConfig(max_new_tokens=8)
    cached, uncached = [], []
    a = generate(model, PROMPTS, s, keep_logits=cached, **kw)
    b = generate(model, PROMPTS, s, use_cache=False, keep_logits=uncached, **kw)
    assert [g.ids for g in a] == [g.ids for g in b]
    assert len(cached) == len(uncached)
    diff = max((x - y).abs().max().item() for x, y in zip(cached, uncached))
    assert diff <= 1e-5, f"{family}: cached vs uncached logits differ by {diff:.3g}"


def test_sampling_stop_strings_and_eos(exported):
    from megatron_biomed.inference.generate import SamplingConfig, generate

    model, cfg = _ours("gpt2", exported)
    kw = dict(vocab_size=cfg.model.vocab_size, max_length=cfg.model.seq_length)
    greedy = generate(model, PROMPTS, SamplingConfig(max_new_tokens=6), **kw)
    for cut in (SamplingConfig(max_new_tokens=6, temperature=0.7, top_k=1),
                SamplingConfig(max_new_tokens=6, temperature=0.7, top_p=1e-6)):  # fmt: skip
        assert [g.ids for g in generate(model, PROMPTS, cut, **kw)] == [g.ids for g in greedy]
    hot = SamplingConfig(max_new_tokens=6, temperature=1.5, seed=7)
    first = generate(model, PROMPTS, hot, **kw)
    assert [g.ids for g in first] == [g.ids for g in generate(model, PROMPTS, hot, **kw)]  # seeded
    assert all(0 <= t < cfg.model.vocab_size for g in first for t in g.ids)

    g0 = greedy[0].ids
    decode = lambda ids: "".join(f"<{i}>" for i in ids)  # noqa: E731
    stop = generate(model, PROMPTS[:1], SamplingConfig(max_new_tokens=6, stop_strings=[f"<{g0[2]}>"]),
                    decode=decode, **kw)[0]  # fmt: skip
    assert stop.finish_reason == "stop" and stop.ids == g0[: g0.index(g0[2]) + 1]
    assert stop.text == decode(g0[: g0.index(g0[2])])
    eos = generate(model, PROMPTS[:1], SamplingConfig(max_new_tokens=6), eos_id=g0[1], **kw)[0]
    assert eos.finish_reason == "eos" and eos.ids == g0[: g0.index(g0[1])]
    streamed = []
    generate(model, PROMPTS, SamplingConfig(max_new_tokens=6), on_token=lambda i, t: streamed.append((i, t)), **kw)
    assert [t for i, t in streamed if i == 1] == greedy[1].ids


def test_tensor_parallel_generation_equals_one_process(exported, tmp_path):
    """tools/generate.py on 2 ranks (TP 2, logits gathered over TP), streaming, prints what one process
    generates."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from launch import ROOT, run_tool

    from megatron_biomed.inference.generate import SamplingConfig, generate
    from megatron_biomed.tokenizer import load_tokenizer

    model, cfg = _ours("llama", exported)
    tok = load_tokenizer(cfg.data.tokenizer)
    prompt = "Patients with type 2"
    want = generate(
        model, [tok.encode(prompt)], SamplingConfig(max_new_tokens=6), vocab_size=cfg.model.vocab_size,
        max_length=cfg.model.seq_length, eos_id=tok.eod_id, decode=tok.decode,
    )[0]  # fmt: skip
    args = ["--load", str(exported["llama"][0]), "--max-new-tokens", "6", "--prompt", prompt, "--stream"]
    proc = run_tool(ROOT / "tools" / "generate.py", 2, args, tmp_path, timeout=180)
    assert prompt + want.text in proc.stdout.splitlines()
