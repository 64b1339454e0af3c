"""Beam search equals transformers' generate(num_beams=k) token for token, with and without an end-of-text token."""

from __future__ import annotations

import pytest
import torch

PROMPTS = [[5, 17, 42, 7, 99], [3, 1, 4, 1, 5, 9, 2, 6, 5], [250, 8, 13]]


def _hf_beams(hf, prompt, k, new, eos):
    ids = torch.tensor([prompt])
    kw = {"min_new_tokens": new, "eos_token_id": None} if eos is None else {"eos_token_id": eos}
    out = hf.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, num_beams=k, max_new_tokens=new,
                      pad_token_id=0 if eos is None else eos, **kw)[0, len(prompt):].tolist()  # fmt: skip
    if eos is not None and eos in out:
        return out[: out.index(eos)], True
    return out, False


def test_beam_search_equals_transformers(exported):
    from transformers import AutoModelForCausalLM

    from megatron_biomed.inference.generate import SamplingConfig, SamplingError, generate
    from megatron_biomed.inference.loading import load_model

    model, cfg = load_model(exported["gpt2"][0])
    hf = AutoModelForCausalLM.from_pretrained(exported["gpt2"][1]).eval()
    kw = {"vocab_size": cfg.model.vocab_size, "max_length": cfg.model.seq_length}
    new, k = 8, 3
    plain = generate(model, PROMPTS, SamplingConfig(max_new_tokens=new, num_beams=k), **kw)
    for prompt, g in zip(PROMPTS, plain):
        assert (g.ids, g.finish_reason == "eos") == _hf_beams(hf, prompt, k, new, None), prompt
    greedy = generate(model, PROMPTS, SamplingConfig(max_new_tokens=new), **kw)
    assert any(b.ids != g.ids for b, g in zip(plain, greedy))  # beams find other continuations than greedy
    reasons = []
    firsts = {g.ids[0] for g in plain + greedy}  # likely first tokens: short hypotheses that end there compete
    for n, eos in [(new, t) for t in {plain[0].ids[2], plain[1].ids[3]}] + [(2, t) for t in firsts]:
        ended = generate(model, PROMPTS, SamplingConfig(max_new_tokens=n, num_beams=k), eos_id=eos, **kw)
        for prompt, g in zip(PROMPTS, ended):
            assert (g.ids, g.finish_reason == "eos") == _hf_beams(hf, prompt, k, n, eos), (prompt, eos)
        reasons += [g.finish_reason for g in ended]
    assert "eos" in reasons  # some best hypothesis ended with the end-of-text token
    with pytest.raises(SamplingError, match="num_beams=2 is beam search"):
        SamplingConfig(num_beams=2, temperature=0.7)
