"""Error measures shared by the kernel tests."""

import torch


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    """max |out - ref| / max |ref| (ref in float64)."""
    scale = ref.abs().max().clamp_min(1e-30)
    return float((out.double() - ref).abs().max() / scale)
