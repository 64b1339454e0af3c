"""One GPU per rank: LOCAL_RANK picks the device, and more ranks on a node than GPUs visible is a clear error
naming both numbers (not CUDA's 'invalid device ordinal' from deep inside)."""

from __future__ import annotations

import pytest
import torch

from megatron_biomed.parallel.env import DistEnv, LaunchEnvError, read_dist_env
from megatron_biomed.parallel.initialize import rank_device


def _env(local_rank: int, ranks_here: int | None) -> DistEnv:
    return DistEnv(5, 8, local_rank, "node1", 29500, "torchrun", local_world_size=ranks_here)


def test_each_rank_takes_the_gpu_of_its_local_rank(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert [rank_device(_env(r, 4)) for r in range(4)] == [torch.device("cuda", r) for r in range(4)]
    assert rank_device(_env(1, None)) == torch.device("cuda", 1)  # the launcher did not say how many run here


@pytest.mark.parametrize("local_rank", [0, 1])
def test_more_ranks_than_gpus_says_both_numbers_and_what_to_do(monkeypatch, local_rank):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    # Every rank of the node fails alike, the one whose GPU exists too (it would wait for the others).
    with pytest.raises(LaunchEnvError) as e:
        rank_device(_env(local_rank, 2))
    msg = str(e.value)
    assert "2 ranks on this node but 1 GPU(s) visible (CUDA_VISIBLE_DEVICES=0)" in msg
    assert "--nproc-per-node 1" in msg and "CUDA_VISIBLE_DEVICES= " in msg and "gloo" in msg
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    with pytest.raises(LaunchEnvError, match="local rank 1 but 1 GPU"):
        rank_device(_env(1, None))


def test_launchers_report_the_ranks_on_this_node():
    torchrun = {"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4"}
    assert read_dist_env(torchrun).local_world_size == 4
    slurm = {"SLURM_PROCID": "9", "SLURM_NTASKS": "11", "SLURM_NODELIST": "gpu[1-3]", "SLURM_LOCALID": "1"}
    assert read_dist_env(dict(slurm, SLURM_TASKS_PER_NODE="4(x2),3", SLURM_NODEID="2")).local_world_size == 3
    assert read_dist_env(dict(slurm, SLURM_TASKS_PER_NODE="4(x2),3", SLURM_NODEID="1")).local_world_size == 4
    assert read_dist_env(dict(slurm, SLURM_NTASKS_PER_NODE="2")).local_world_size == 2
    assert read_dist_env(slurm).local_world_size is None
    assert read_dist_env({}).local_world_size == 1
