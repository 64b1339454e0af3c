"""Run under torchrun (4 gloo ranks): load each checkpoint at TP2xPP2, TP2, PP2 and PP2 x VPP2 and write its
logits on the given tokens (``<out>/<name>_tp<T>_pp<P>_vpp<V>.pt``) and the pretraining loss of that batch
(``..._loss.pt``: LanguageModelTask's forward step and loss through megatron-core's schedule, what a
training step computes before its update), from the first rank of the last stage."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

LAYOUTS = ((2, 2, None), (2, 1, None), (1, 2, None), (1, 2, 2))  # (TP, PP, VPP)


def main() -> None:
    from megatron.core import parallel_state as ps

    from megatron_biomed.checkpoint import run_experiment_config
    from megatron_biomed.inference.forward import forward_logits
    from megatron_biomed.inference.loading import load_model_chunks
    from megatron_biomed.parallel.env import read_dist_env
    from megatron_biomed.parallel.initialize import initialize_parallel

    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint", action="append", required=True, help="name=path")
    p.add_argument("--tokens", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    tokens = torch.load(args.tokens)
    env = read_dist_env()
    for item in args.checkpoint:
        name, path = item.split("=", 1)
        for tp, pp, vpp in LAYOUTS:
            _, cfg = run_experiment_config(path)
            cfg.parallel.tensor_model_parallel_size, cfg.parallel.pipeline_model_parallel_size = tp, pp
            cfg.parallel.virtual_pipeline_model_parallel_size = vpp
            micro = pp if vpp else 1  # the interleaved schedule runs a multiple of PP micro-batches
            cfg.train.micro_batch_size = tokens.shape[0] // micro
            cfg.train.global_batch_size = tokens.shape[0] * env.world_size // (tp * pp)
            initialize_parallel(cfg, env)
            chunks = load_model_chunks(cfg, path)
            logits = forward_logits(chunks, tokens, cfg.model.vocab_size, num_microbatches=micro)
            loss = training_loss(cfg, chunks, tokens, micro)
            first_of_last = ps.is_pipeline_last_stage() and ps.get_tensor_model_parallel_rank() == 0
            if logits is not None and first_of_last and ps.get_data_parallel_rank() == 0:
                torch.save(logits.cpu(), Path(args.out) / f"{name}_tp{tp}_pp{pp}_vpp{vpp}.pt")
                torch.save(loss, Path(args.out) / f"{name}_tp{tp}_pp{pp}_vpp{vpp}_loss.pt")
            del chunks
            torch.distributed.barrier()


def training_loss(cfg, chunks, tokens: torch.Tensor, micro: int):
    """Mean next-token loss of ``tokens`` as pretraining computes it (forward only), on the last stage."""
    from megatron.core.pipeline_parallel import get_forward_backward_func

    from megatron_biomed.data.gpt_dataset import TokenInfo
    from megatron_biomed.training.lm_task import LanguageModelTask

    cfg.data.mock = True  # the batch is given here: no data blend to check
    task = LanguageModelTask(cfg, TokenInfo(vocab_size=cfg.model.vocab_size, eod=0))
    b, s = tokens.shape[0], tokens.shape[1] - 1
    batches = [
        {"tokens": part[:, :-1], "labels": part[:, 1:], "loss_mask": torch.ones(part.shape[0], s),
         "position_ids": torch.arange(s).expand(part.shape[0], s)}
        for part in tokens.chunk(micro)
    ]  # fmt: skip
    iters = [iter(batches) for _ in chunks]
    out = get_forward_backward_func()(
        forward_step_func=task.forward_step, data_iterator=iters if len(chunks) > 1 else iters[0],
        model=chunks if len(chunks) > 1 else chunks[0], num_microbatches=micro, seq_length=s,
        micro_batch_size=b // micro, forward_only=True,
    )  # fmt: skip
    if not out:
        return None
    return sum(m["lm loss"][0].item() for m in out) / len(out)  # equal-sized micro-batches: the batch mean


if __name__ == "__main__":
    main()
