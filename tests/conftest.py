"""Shared pytest fixtures: a one-rank gloo process group with megatron-core parallel state, toy task data,
and the initial weights and reference run that the training and checkpoint tests compare against."""

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


# Shared by the training and checkpoint tests (session-scoped: made once however many files use them).
@pytest.fixture(scope="session")
def initial_weights(tmp_path_factory):
    """Model weights initialised by one process and saved at iteration 0 (dist_checkpointing)."""
    from launch import BASE, run_pretrain

    work = tmp_path_factory.mktemp("init")
    run_pretrain(1, BASE + ["train.train_iters=0", f"checkpoint.save={work / 'ckpt'}"], work)
    return work / "ckpt"


@pytest.fixture(scope="session")
def reference(initial_weights, tmp_path_factory):
    """One process, 20 steps straight from the initial weights: iteration -> metrics."""
    from launch import BASE, read_metrics, run_pretrain

    work = tmp_path_factory.mktemp("ref")
    run_pretrain(
        1, BASE + [f"checkpoint.init_from={initial_weights}", f"logging.metrics_file={work / 'm.jsonl'}"], work
    )
    return read_metrics(work / "m.jsonl")


@pytest.fixture(scope="session")
def resumed_across_layouts(initial_weights, tmp_path_factory):
    """Trained from the initial weights at TP2 x PP2 (4 ranks; saves at 5 and 10, killed at 13), resumed at
    TP1 x PP2 (2 ranks) up to 20 (saved there). Returns {"ck": the checkpoint root, "metrics": the resumed
    run's}. Its 4-rank and 2-rank checkpoints serve the checkpoint tests too (one save per world size)."""
    from launch import resume_training, train_until_killed

    work = tmp_path_factory.mktemp("layouts")
    tp2pp2 = ["parallel.tensor_model_parallel_size=2", "parallel.pipeline_model_parallel_size=2"]
    train_until_killed(4, tp2pp2, initial_weights, work)
    metrics = resume_training(2, ["parallel.pipeline_model_parallel_size=2"], work)
    return {"ck": work / "ck", "metrics": metrics}


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """A real single-node Slurm (tests/slurm_cluster.py), started once for the session and stopped after it.
    Skips, saying why, only where the packages cannot be installed or the daemons cannot start."""
    import slurm_cluster

    try:
        cluster = slurm_cluster.start(tmp_path_factory.mktemp("slurm"))
    except slurm_cluster.SlurmUnavailable as e:
        pytest.skip(f"no real Slurm here: {e}")
    yield cluster
    cluster.stop()
