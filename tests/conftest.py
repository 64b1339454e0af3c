"""Shared pytest fixtures: a one-rank gloo process group with megatron-core parallel state."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture
def single_rank_parallel():
    """megatron-core parallel state (TP=PP=DP=1) in this process, torn down afterwards."""
    import torch.distributed as dist
    from launch import free_port
    from megatron.core import parallel_state as ps

    from megatron_biomed.parallel import cpu

    cpu.apply_cpu_patches()
    if not dist.is_initialized():
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    ps.initialize_model_parallel(1, 1)
    cpu.model_parallel_manual_seed(1234)
    yield
    ps.destroy_model_parallel()
    # megatron-core's groups are only dropped by destroy_model_parallel; their gloo threads (about 60 per
    # initialisation, each polling) live until the process group itself is destroyed.
    if dist.is_initialized():
        dist.destroy_process_group()


@pytest.fixture(scope="session")
def toy(tmp_path_factory):
    """Toy task files, a tokenizer for them and a pretrained tiny checkpoint (tests/toydata.py)."""
    from toydata import make_toy

    return make_toy(tmp_path_factory.mktemp("toy"))
