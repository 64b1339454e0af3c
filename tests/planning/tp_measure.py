"""Run under torchrun (2 gloo ranks): each rank builds a TP=2 model, counts what it holds and saves for
backward in one forward, and writes that with the planner's estimate to OUT/rank<r>.json."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main(out: str, preset: str, recompute: str) -> None:
    import torch
    import torch.distributed as dist
    from megatron.core import parallel_state as ps

    from megatron_biomed.config import get_preset
    from megatron_biomed.models.gpt import build_model_chunks, transformer_config
    from megatron_biomed.parallel import cpu
    from megatron_biomed.planning.layouts import Layout
    from megatron_biomed.planning.measure import parameter_bytes, saved_activation_bytes
    from megatron_biomed.planning.memory import estimate_memory

    cpu.apply_cpu_patches()
    dist.init_process_group("gloo")
    ps.initialize_model_parallel(2, 1)
    cpu.model_parallel_manual_seed(1234)
    cfg = get_preset(preset)
    cfg.parallel.tensor_model_parallel_size = 2
    if recompute == "selective":
        cfg.train.recompute_granularity = "selective"
    model = build_model_chunks(cfg, transformer_config(cfg))[0]
    model.train()
    b, s, v = cfg.train.micro_batch_size, cfg.model.seq_length, cfg.model.vocab_size
    gen = torch.Generator().manual_seed(0)
    tokens, labels = torch.randint(0, v, (b, s), generator=gen), torch.randint(0, v, (b, s), generator=gen)
    mask = torch.triu(torch.ones(1, 1, s, s, dtype=torch.bool), diagonal=1)
    with saved_activation_bytes(model) as saved:
        losses = model(tokens, torch.arange(s).repeat(b, 1), mask, labels=labels)  # held: its graph holds the saves
    assert losses.requires_grad
    layout = Layout(tp=2, micro_batch_size=b, recompute=recompute)
    est = estimate_memory(cfg.model, layout, global_batch_size=b, precision="fp32", runtime_overhead=0).terms
    row = {"activations": [saved.total, est["activations"]], "weights": [parameter_bytes([model]), est["weights"]]}
    Path(out, f"rank{dist.get_rank()}.json").write_text(json.dumps(row))
    dist.destroy_process_group()


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main(*sys.argv[1:])
