"""A process that loads one model after another (conversion, prediction, the test session itself) must not keep
the process groups of the earlier loads: each megatron-core initialisation holds some 60 gloo threads that poll,
and a few dozen left behind starve the process's own work."""

from __future__ import annotations

import os

import torch.distributed as dist
from megatron.core import parallel_state as ps

from megatron_biomed.config.presets import get_preset
from megatron_biomed.parallel.initialize import shutdown_parallel, single_process_config


def _threads() -> int:
    return len(os.listdir(f"/proc/{os.getpid()}/task"))


def test_each_single_process_load_replaces_the_last_world():
    cfg = get_preset("tiny-biomedlm")
    try:
        single_process_config(cfg)
        first = _threads()
        assert first > 20  # megatron-core's groups started their gloo threads (or the count below means nothing)
        for _ in range(4):
            one = single_process_config(cfg)
        assert _threads() <= first + 4, f"{_threads()} threads after 5 loads, {first} after the first"
        assert dist.get_world_size() == 1 and ps.get_tensor_model_parallel_world_size() == 1
        assert one.parallel.tensor_model_parallel_size == 1
    finally:
        shutdown_parallel()
