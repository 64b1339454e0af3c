"""Seeding sets the values megatron-core's CUDA seeding sets, not merely repeatable ones: the default generator
gets ``seed``, the tracker's data-parallel state ``seed``, its model-parallel state ``seed + 2718 + TP rank``
and its expert state ``seed + 1024 + 100 * EP rank + ETP rank`` (tensor_parallel/random.py,
model_parallel_cuda_manual_seed). Ignoring the seed, or the per-TP-rank offset (every TP rank would then draw
the same dropout masks for its shard), fails here."""

from __future__ import annotations

import pytest
import torch


def _state(seed: int) -> torch.Tensor:
    return torch.Generator().manual_seed(seed).get_state()


@pytest.mark.parametrize("tp_rank", [0, 1])
def test_seed_values_per_tensor_parallel_rank(tp_rank, single_rank_parallel, monkeypatch):
    from megatron.core import parallel_state as ps
    from megatron.core.tensor_parallel import random as mc_random

    from megatron_biomed.parallel import cpu

    monkeypatch.setattr(ps, "get_tensor_model_parallel_rank", lambda *a, **k: tp_rank)
    seed = 4321
    cpu.model_parallel_manual_seed(seed)
    assert torch.initial_seed() == seed
    states = mc_random.get_cuda_rng_tracker().get_states()
    assert torch.equal(states[mc_random._DATA_PARALLEL_RNG_TRACKER_NAME], _state(seed))
    assert torch.equal(states[mc_random._MODEL_PARALLEL_RNG_TRACKER_NAME], _state(seed + 2718 + tp_rank))
    assert torch.equal(states[mc_random._EXPERT_PARALLEL_RNG_TRACKER_NAME], _state(seed + 1024))
    # The default generator is where it was seeded (adding tracker states must not consume it).
    assert torch.equal(torch.get_rng_state(), _state(seed))
