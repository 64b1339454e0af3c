"""Training tokens/s of our Mamba2 (megatron-core HybridModel with the PyTorch mixer, models/mamba/) against
transformers' ``Mamba2ForCausalLM`` on its PyTorch path (no mamba_ssm / causal_conv1d), same shape, same
weights, one process; with a GPU and mamba_ssm installed, also megatron-core's own MambaMixer (fused kernels).

A step is forward + backward of the LM loss on ``--batch`` x ``--seq`` tokens (no optimizer, which is the
same for both). Prints one table row per implementation and the ratio to transformers (target: >= 1).

    python benchmarks/mamba.py [--hidden 256 --layers 2 --head-dim 64 --state 128 --chunk 64 --batch 2 --seq 256]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _config(a):
    from megatron_biomed.config import get_preset

    cfg = get_preset("tiny-mamba")
    m = cfg.model
    m.hidden_size, m.num_layers, m.mamba_head_dim, m.mamba_state_dim = a.hidden, a.layers, a.head_dim, a.state
    m.mamba_num_groups, m.mamba_chunk_size, m.seq_length, m.vocab_size = a.groups, a.chunk, a.seq, a.vocab
    m.num_attention_heads = 2 * a.hidden // a.head_dim
    cfg.train.precision = "fp32"
    return cfg


def _time(step, warmup: int, iters: int) -> float:
    for _ in range(warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    return (time.perf_counter() - t0) / iters


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in (("hidden", 256), ("layers", 2), ("head-dim", 64), ("state", 128), ("groups", 1),
                          ("chunk", 64), ("batch", 2), ("seq", 256), ("vocab", 512), ("warmup", 2), ("iters", 5)):
        p.add_argument(f"--{name}", type=int, default=default)
    a = p.parse_args(argv)

    import torch
    import torch.distributed as dist
    import transformers
    from megatron.core import parallel_state as ps

    from megatron_biomed.models.registry import get_family
    from megatron_biomed.parallel import cpu
    from megatron_biomed.parallel.env import find_free_port

    cpu.apply_cpu_patches()
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{find_free_port()}", rank=0, world_size=1)
    ps.initialize_model_parallel(1, 1)
    cpu.model_parallel_manual_seed(1234)
    cfg = _config(a)
    m = cfg.model
    (ours,) = get_family("mamba2").build_model_chunks(cfg)
    hf = transformers.Mamba2ForCausalLM(transformers.Mamba2Config(
        vocab_size=m.padded_vocab_size(1), hidden_size=m.hidden_size, num_hidden_layers=m.num_layers,
        state_size=m.mamba_state_dim, expand=2, head_dim=m.mamba_head_dim, num_heads=m.num_attention_heads,
        n_groups=m.mamba_num_groups, conv_kernel=4, chunk_size=m.mamba_chunk_size, tie_word_embeddings=True,
        residual_in_fp32=True, time_step_limit=(0.0, float("inf")),
    ))  # fmt: skip
    tokens = torch.randint(0, a.vocab, (a.batch, a.seq))
    pos = torch.arange(a.seq)[None].expand(a.batch, -1)

    def ours_step():
        ours.zero_grad(set_to_none=True)
        ours(tokens, pos, None, labels=tokens).mean().backward()

    def hf_step():
        hf.zero_grad(set_to_none=True)
        hf(tokens, labels=tokens).loss.backward()

    rows = {"transformers Mamba2 (torch path)": _time(hf_step, a.warmup, a.iters),
            "ours (TorchMambaMixer)": _time(ours_step, a.warmup, a.iters)}  # fmt: skip
    base = rows["transformers Mamba2 (torch path)"]
    tok = a.batch * a.seq
    print(f"shape: hidden {a.hidden}, {a.layers} layers, {m.num_attention_heads} heads x {a.head_dim}, state "
          f"{a.state}, groups {a.groups}, chunk {a.chunk}, batch {a.batch} x seq {a.seq}, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    print(f"{'implementation':40s} {'ms/step':>9s} {'tokens/s':>10s} {'vs transformers':>16s}")
    for name, sec in rows.items():
        print(f"{name:40s} {sec * 1e3:9.1f} {tok / sec:10.0f} {base / sec:15.2f}x")
    ps.destroy_model_parallel()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
