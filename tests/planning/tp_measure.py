"""Run under torchrun (2 gloo ranks): for each ``PRESET RECOMPUTE`` pair each rank builds a TP=2 model, counts what
it holds and saves for backward in one forward, and writes that with the planner's estimate to OUT/rank<r>.json
(one entry per pair)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main(out: str, *pairs: str) -> None:
    import torch.distributed as dist
    from megatron.core import parallel_state as ps

    from megatron_biomed.parallel import cpu

    cpu.apply_cpu_patches()
    dist.init_process_group("gloo")
    ps.initialize_model_parallel(2, 1)
    cpu.model_parallel_manual_seed(1234)
    rows = {}
    for preset, recompute in zip(pairs[::2], pairs[1::2]):
        rows[f"{preset} {recompute}"] = _measure(preset, recompute)
    Path(out, f"rank{dist.get_rank()}.json").write_text(json.dumps(rows))
    dist.destroy_process_group()


def _measure(preset: str, recompute: str) -> dict:
    import torch

    from megatron_biomed.config import get_preset
    from megatron_biomed.models.registry import build_model_chunks
    from megatron_biomed.models.common import transformer_config
    from megatron_biomed.planning.layouts import Layout
    from megatron_biomed.planning.measure import parameter_bytes, saved_activation_bytes
    from megatron_biomed.planning.memory import estimate_memory

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
    if cfg.model.family == "mamba2":
        mask = None
    with saved_activation_bytes(model) as saved:
        losses = model(tokens, torch.arange(s).repeat(b, 1), mask, labels=labels)  # held: its graph holds the saves
    assert losses.requires_grad
    layout = Layout(tp=2, micro_batch_size=b, recompute=recompute)
    est = estimate_memory(cfg.model, layout, global_batch_size=b, precision="fp32", runtime_overhead=0,
                          fused_kernels=False).terms  # fmt: skip
    return {"activations": [saved.total, est["activations"]], "weights": [parameter_bytes([model]), est["weights"]]}


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main(*sys.argv[1:])
