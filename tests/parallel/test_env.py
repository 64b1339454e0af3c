"""Rank, world size and rendezvous host from torchrun's or SLURM's environment."""

import pytest

from megatron_biomed.parallel.env import LaunchEnvError, first_slurm_host, read_dist_env


def test_torchrun_environment():
    env = {"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "MASTER_ADDR": "node7", "MASTER_PORT": "29400"}
    d = read_dist_env(env)
    assert (d.rank, d.world_size, d.local_rank, d.master_addr, d.master_port, d.launcher) == (
        3,
        8,
        1,
        "node7",
        29400,
        "torchrun",
    )


def test_slurm_environment_uses_first_host_and_job_port():
    env = {
        "SLURM_PROCID": "17",
        "SLURM_NTASKS": "128",
        "SLURM_LOCALID": "1",
        "SLURM_NODELIST": "gpu[012-027],login1",
        "SLURM_JOB_ID": "123456",
    }
    d = read_dist_env(env)
    assert (d.rank, d.world_size, d.local_rank, d.launcher) == (17, 128, 1, "slurm")
    assert d.master_addr == "gpu012"
    assert d.master_port == 10000 + 123456 % 20000


def test_torchrun_variables_win_over_slurm():
    env = {"RANK": "0", "WORLD_SIZE": "2", "SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_NODELIST": "a1"}
    assert read_dist_env(env).launcher == "torchrun"


@pytest.mark.parametrize(
    "nodelist,host",
    [
        ("node1", "node1"),
        ("gpu[3-5]", "gpu3"),
        ("gpu[003,010-012]", "gpu003"),
        ("a[1-2],b[3-4]", "a1"),
        ("dgx-h100-[0007-0010]", "dgx-h100-0007"),
    ],
)
def test_first_slurm_host(nodelist, host):
    assert first_slurm_host(nodelist) == host


def test_no_launcher_means_one_process():
    d = read_dist_env({})
    assert (d.rank, d.world_size, d.launcher) == (0, 1, "single")


@pytest.mark.parametrize(
    "env,msg",
    [
        ({"RANK": "x", "WORLD_SIZE": "2"}, "RANK='x' is not an integer"),
        ({"RANK": "4", "WORLD_SIZE": "4"}, "rank 4 is outside world size 4"),
        ({"SLURM_PROCID": "0", "SLURM_NTASKS": "2"}, "without SLURM_NODELIST"),
    ],
)
def test_bad_environments_are_named(env, msg):
    with pytest.raises(LaunchEnvError, match=msg):
        read_dist_env(env)
