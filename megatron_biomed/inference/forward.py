"""Full-vocabulary logits of model chunks at any TP / PP / VPP layout (megatron-core's pipeline schedule,
forward only), for conversion checks, scoring and generation over several ranks."""

from __future__ import annotations

import torch
from megatron.core import tensor_parallel
from megatron.core.pipeline_parallel import get_forward_backward_func


def model_device(chunks) -> torch.device:
    """The device the model's parameters live on (inputs must be created there)."""
    return next(iter(chunks[0].parameters())).device


@torch.no_grad()
def forward_logits(
    chunks: list, tokens: torch.Tensor, vocab_size: int | None = None, num_microbatches: int = 1
) -> torch.Tensor | None:
    """Logits ``[b, s, vocab]`` of ``tokens`` ``[b, s]`` gathered over tensor-parallel ranks, on the ranks of
    the last pipeline stage (None elsewhere); padding columns cut at ``vocab_size``. The batch runs as
    ``num_microbatches`` micro-batches (the interleaved schedule needs a multiple of PP of them)."""

    device = model_device(chunks)
    tokens = tokens.to(device)
    b, s = tokens.shape
    if b % num_microbatches:
        raise ValueError(f"forward_logits: batch {b} does not split into {num_microbatches} micro-batches")
    positions = torch.arange(s, device=device).unsqueeze(0)
    batches = [
        {"tokens": part, "position_ids": positions.expand(part.shape[0], s)} for part in tokens.chunk(num_microbatches)
    ]

    def collect(output, non_loss_data=True):
        return tensor_parallel.gather_from_tensor_model_parallel_region(output)

    def step(data_iterator, model):
        data = next(data_iterator)
        return model(data["tokens"], data["position_ids"], None), collect

    for c in chunks:
        c.eval()
    iters = [iter(batches) for _ in chunks]
    out = get_forward_backward_func()(
        forward_step_func=step,
        data_iterator=iters if len(chunks) > 1 else iters[0],
        model=chunks if len(chunks) > 1 else chunks[0],
        num_microbatches=num_microbatches,
        seq_length=s,
        micro_batch_size=b // num_microbatches,
        forward_only=True,
        collect_non_loss_data=True,
    )
    if not out:
        return None
    logits = torch.cat(list(out), dim=0)
    return logits[..., :vocab_size] if vocab_size else logits
