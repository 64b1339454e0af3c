"""Run under torchrun (2 gloo ranks, PP = 2): each stage builds tiny-biomedlm's chunk twice, without
recomputation and with ``train.recompute_num_layers_per_stage`` = STAGE0,STAGE1 (full, block), runs one forward
and backward of the same micro-batch on each, and writes to OUT/rank<r>.json the bytes saved for backward,
the number of layers the chunk recomputes, and whether loss and every gradient are bit-identical."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _forward_backward(cfg, stage: int):
    import torch

    from megatron_biomed.models.common import transformer_config
    from megatron_biomed.models.registry import build_model_chunks
    from megatron_biomed.parallel import cpu
    from megatron_biomed.planning.measure import saved_activation_bytes

    cpu.model_parallel_manual_seed(1234)
    tconfig = transformer_config(cfg)
    model = build_model_chunks(cfg, tconfig)[0]
    model.train()
    b, s, v, h = cfg.train.micro_batch_size, cfg.model.seq_length, cfg.model.vocab_size, cfg.model.hidden_size
    gen = torch.Generator().manual_seed(0)
    tokens, labels = torch.randint(0, v, (b, s), generator=gen), torch.randint(0, v, (b, s), generator=gen)
    hidden = torch.randn(s, b, h, generator=gen, requires_grad=True)  # what stage 0 would send
    mask = torch.triu(torch.ones(1, 1, s, s, dtype=torch.bool), diagonal=1)
    if stage == 1:
        model.set_input_tensor(hidden)
    with saved_activation_bytes(model) as saved:
        out = model(tokens, torch.arange(s).repeat(b, 1), mask, labels=labels if stage == 1 else None)
        held = saved.total
    loss = out.float().mean() if stage == 1 else (out.float() * torch.linspace(-1, 1, h)).sum()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    if stage == 1:
        grads["input"] = hidden.grad.clone()
    return loss.item(), grads, held, tconfig.recompute_num_layers or 0


def main(out: str, stage0: str, stage1: str) -> None:
    import torch
    import torch.distributed as dist
    from megatron.core import parallel_state as ps

    from megatron_biomed.config import get_preset
    from megatron_biomed.parallel import cpu

    cpu.apply_cpu_patches()
    dist.init_process_group("gloo")
    ps.initialize_model_parallel(1, 2)
    stage = ps.get_pipeline_model_parallel_rank()
    cfg = get_preset("tiny-biomedlm")
    cfg.parallel.pipeline_model_parallel_size = 2
    loss0, grads0, saved0, _ = _forward_backward(cfg, stage)
    cfg.train.recompute_granularity, cfg.train.recompute_method = "full", "block"
    cfg.train.recompute_num_layers_per_stage = [int(stage0), int(stage1)]
    loss1, grads1, saved1, layers = _forward_backward(cfg, stage)
    same = loss0 == loss1 and grads0.keys() == grads1.keys() and all(torch.equal(grads0[k], grads1[k]) for k in grads0)
    row = {"stage": stage, "saved_without": saved0, "saved_with": saved1, "recomputed_layers": layers,
           "identical": same, "gradients": len(grads0)}  # fmt: skip
    Path(out, f"rank{dist.get_rank()}.json").write_text(json.dumps(row))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
