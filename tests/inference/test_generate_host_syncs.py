"""Generation keeps its decoding state on the device: the same tokens, finish reasons and logits as the per-token
host loop it replaced (a copy of it below), with a host read every STOP_CHECK_EVERY tokens instead of 2 per
sequence per token."""

from __future__ import annotations

import pytest
import torch
from host_syncs import HostSyncs

from megatron_biomed.inference import generate as gen

PROMPTS = [[5, 17, 42, 7, 99], [3, 1, 4, 1, 5, 9, 2, 6, 5], [250, 8, 13]]


def _per_token_reference(model, prompts, sampling, *, vocab_size, max_length, eos_id, keep_logits):
    """The loop before: two host reads per sequence per token (megatron_biomed/inference/generate.py at b5da238,
    without streaming and stop strings)."""
    device = next(model.parameters()).device
    b = len(prompts)
    lengths = torch.tensor([len(p) for p in prompts], device=device)
    total = min(int(lengths.max()) + sampling.max_new_tokens, max_length)
    tokens = torch.zeros(b, total, dtype=torch.long, device=device)
    for i, p in enumerate(prompts):
        tokens[i, : len(p)] = torch.tensor(list(p), dtype=torch.long, device=device)
    ids, reason = [[] for _ in prompts], ["length"] * b
    done = [sampling.max_new_tokens == 0] * b
    generator = None if sampling.greedy else torch.Generator(device=device).manual_seed(sampling.seed)
    context = gen.StaticInferenceContext(b, total)
    start = 0
    for cur in range(int(lengths.min()), total):
        if all(done):
            break
        positions = torch.arange(start, cur, device=device).unsqueeze(0).expand(b, -1)
        logits = model(tokens[:, start:cur], positions, None, inference_context=context)
        context.sequence_len_offset += cur - start
        step = logits[:, -1, :].float()[:, :vocab_size]
        keep_logits.append(step.clone())
        chosen = gen.next_tokens(step, sampling, generator)
        in_prompt = cur < lengths
        tokens[:, cur] = torch.where(in_prompt, tokens[:, cur], chosen)
        start = cur
        for i in range(b):
            if done[i] or bool(in_prompt[i]):
                continue
            token = int(tokens[i, cur])
            if token == eos_id:
                reason[i] = "eos"
            else:
                ids[i].append(token)
            done[i] = reason[i] != "length" or len(ids[i]) >= sampling.max_new_tokens
    return ids, reason


@pytest.mark.parametrize("sampling", [gen.SamplingConfig(max_new_tokens=19),
                                      gen.SamplingConfig(max_new_tokens=19, temperature=1.3, top_k=40, seed=11)],
                         ids=["greedy", "sampled"])  # fmt: skip
def test_same_generations_as_the_per_token_loop_with_a_read_every_k_tokens(exported, sampling):
    from megatron_biomed.inference.loading import load_model

    model, cfg = load_model(exported["gpt2"][0])
    kw = dict(vocab_size=cfg.model.vocab_size, max_length=cfg.model.seq_length)
    free = gen.generate(model, PROMPTS, sampling, **kw)
    eos = free[1].ids[3]  # prompt 1 meets eos early, the others (most likely) run to the length
    want_logits, got_logits = [], []
    want_ids, want_reason = _per_token_reference(model, PROMPTS, sampling, eos_id=eos, keep_logits=want_logits, **kw)
    counter = HostSyncs()
    with counter:
        got = gen.generate(model, PROMPTS, sampling, eos_id=eos, keep_logits=got_logits, **kw)
    assert [g.ids for g in got] == want_ids and [g.finish_reason for g in got] == want_reason
    assert "eos" in want_reason and len(want_ids[1]) == free[1].ids.index(eos)
    assert len(got_logits) == len(want_logits)
    assert all(torch.equal(a, b) for a, b in zip(got_logits, want_logits))
    steps = len(want_logits)
    reads = [site for _, site in counter.events if site.startswith("generate.py")]
    # A read every STOP_CHECK_EVERY tokens (up to the one after the last sequence ended) and one at the end.
    assert len(reads) <= steps // gen.STOP_CHECK_EVERY + 2, counter.events
    # Stop early: the one sequence ends at eos (greedy: as in the batch) before the length; the tokens decoded
    # after it, up to the next check, are dropped.
    one_want = []
    ref_ids, ref_reason = _per_token_reference(model, PROMPTS[1:2], sampling, eos_id=eos, keep_logits=one_want, **kw)
    early = gen.generate(model, PROMPTS[1:2], sampling, eos_id=eos, keep_logits=(kept := []), **kw)[0]
    assert (early.ids, early.finish_reason, len(kept)) == (ref_ids[0], ref_reason[0], len(one_want))
    if sampling.greedy:
        assert early.finish_reason == "eos" and len(kept) < sampling.max_new_tokens
