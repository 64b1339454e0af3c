"""Generation throughput (new tokens per second) of ours against transformers' ``generate``, same model, same
prompts, one run.

A random LlamaForCausalLM (or GPT2LMHeadModel with ``--family gpt2``) is built by transformers, imported with
tools/convert_hf.py's import_hf, and both decode greedily ``--new-tokens`` tokens for a batch of prompts of
different lengths (ours: megatron_biomed.inference.generate with its KV cache; transformers: ``generate``
with its cache, each prompt on its own since it would otherwise left-pad). The variants take turns for
``--rounds``; the table shows the median. A check first: both produce the same tokens.

    python benchmarks/generate.py [--family llama --hidden 256 --layers 4 --new-tokens 64 --prompts 4]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch


def _hf_model(family: str, a, out: Path):
    if family == "llama":
        from transformers import LlamaConfig, LlamaForCausalLM

        cfg = LlamaConfig(
            vocab_size=a.vocab, hidden_size=a.hidden, intermediate_size=a.hidden * 8 // 3, num_hidden_layers=a.layers,
            num_attention_heads=a.heads, num_key_value_heads=max(1, a.heads // 4), max_position_embeddings=512,
        )  # fmt: skip
        model = LlamaForCausalLM(cfg)
    else:
        from transformers import GPT2Config, GPT2LMHeadModel

        cfg = GPT2Config(
            vocab_size=a.vocab, n_embd=a.hidden, n_layer=a.layers, n_head=a.heads, n_positions=512,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, scale_attn_by_inverse_layer_idx=True,
        )  # fmt: skip
        model = GPT2LMHeadModel(cfg)
    model.eval().save_pretrained(out)
    return model


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--family", choices=("llama", "gpt2"), default="llama")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--prompts", type=int, default=4)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    torch.manual_seed(0)
    from megatron_biomed.convert.importer import import_hf
    from megatron_biomed.inference.generate import SamplingConfig, generate
    from megatron_biomed.inference.loading import load_model

    with tempfile.TemporaryDirectory() as tmp:
        hf = _hf_model(a.family, a, Path(tmp) / "hf")
        import_hf(Path(tmp) / "hf", Path(tmp) / "ckpt")
        ours, cfg = load_model(Path(tmp) / "ckpt")
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(0, a.vocab, (16 + 8 * i,), generator=g).tolist() for i in range(a.prompts)]
    s = SamplingConfig(max_new_tokens=a.new_tokens)

    def run_ours():
        out = generate(ours, prompts, s, vocab_size=cfg.model.vocab_size, max_length=cfg.model.seq_length)
        return [r.ids for r in out]

    def run_hf():
        with torch.no_grad():
            res = []
            for prompt in prompts:
                ids = torch.tensor([prompt])
                out = hf.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, pad_token_id=0,
                                  max_new_tokens=a.new_tokens, min_new_tokens=a.new_tokens)  # fmt: skip
                res.append(out[0, len(prompt) :].tolist())
            return res

    same = run_ours() == run_hf()
    times = {"ours": [], "transformers": []}
    for _ in range(a.rounds):
        for name, fn in (("ours", run_ours), ("transformers", run_hf)):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    tokens = a.new_tokens * a.prompts
    print(
        f"{a.family}: hidden {a.hidden}, {a.layers} layers, vocab {a.vocab}; {a.prompts} prompts of "
        f"16..{len(prompts[-1])} tokens, {a.new_tokens} new tokens each (greedy); "
        f"threads {torch.get_num_threads()}; same tokens: {same}"
    )
    print(f"{'variant':14} {'tokens/s':>9} {'median s':>9}")
    rate = {}
    for name, ts in times.items():
        med = statistics.median(ts)
        rate[name] = tokens / med
        print(f"{name:14} {rate[name]:9.1f} {med:9.3f}")
    print(f"ratio ours / transformers: {rate['ours'] / rate['transformers']:.2f}")
    return 0 if same else 1


if __name__ == "__main__":  # dist_checkpointing starts spawn-mode helpers: the guard is required
    sys.exit(main())
