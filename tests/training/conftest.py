"""Shared runs for the training tests: initial weights saved once, and a one-process reference run."""

from __future__ import annotations

import pytest
from launch import BASE, read_metrics, run_pretrain


@pytest.fixture(scope="session")
def initial_weights(tmp_path_factory):
    """Model weights initialised by one process and saved at iteration 0 (dist_checkpointing)."""
    work = tmp_path_factory.mktemp("init")
    run_pretrain(1, BASE + ["train.train_iters=0", f"checkpoint.save={work / 'ckpt'}"], work)
    return work / "ckpt"


@pytest.fixture(scope="session")
def reference(initial_weights, tmp_path_factory):
    """One process, 20 steps straight from the initial weights: iteration -> metrics."""
    work = tmp_path_factory.mktemp("ref")
    run_pretrain(
        1, BASE + [f"checkpoint.init_from={initial_weights}", f"logging.metrics_file={work / 'm.jsonl'}"], work
    )
    return read_metrics(work / "m.jsonl")
