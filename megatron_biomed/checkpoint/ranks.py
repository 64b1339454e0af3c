"""Which rank does what in a checkpoint collective: rank 0 writes the shared files, and an error any rank meets
is raised on every rank. Each function also works without a process group (one process)."""

from __future__ import annotations

from typing import Optional

import torch.distributed as dist


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_rank0() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def gather_to_rank0(obj) -> Optional[list]:
    """Every rank's ``obj`` on rank 0 (in rank order); None on the other ranks."""
    if not dist.is_initialized():
        return [obj]
    gathered = [None] * dist.get_world_size()
    mine = dist.get_rank() == 0
    dist.gather_object(obj, gathered if mine else None, dst=0)
    return gathered if mine else None


def all_ranks_errors(error: Optional[str]) -> list[str]:
    """The errors every rank met (each rank passes its own, or None), on every rank."""
    if not dist.is_initialized():
        return [error] if error else []
    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, error)
    return [e for e in out if e]
