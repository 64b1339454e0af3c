"""Parallel layouts train exactly like one process.

How the weights are made equal across layouts: one process initialises the model and saves it with
megatron-core dist_checkpointing (iteration 0); every run, whatever its TP/PP/DP layout, starts from that
checkpoint with ``checkpoint.init_from`` (dist_checkpointing reshards the global tensors on load). The data
is megatron-core's MockGPTDataset with a fixed seed, split across DP ranks as Megatron-LM does; dropout is 0.
Each run trains 10 steps of the same global batch in fp32; losses must match the one-process run within
1e-5 relative.
"""

from __future__ import annotations

import pytest
from launch import BASE, assert_losses_close, read_metrics, run_pretrain

STEPS = 10
LAYOUTS = {
    "tp2": (2, ["parallel.tensor_model_parallel_size=2"]),
    "pp2": (2, ["parallel.pipeline_model_parallel_size=2"]),
    "dp2": (2, []),
    "dp2-distributed-optimizer": (2, ["parallel.use_distributed_optimizer=true"]),
    "pp2-vpp2": (2, ["parallel.pipeline_model_parallel_size=2", "parallel.virtual_pipeline_model_parallel_size=2"]),
    # Sequence parallelism needs our norm module (kernels="csrc", PyTorch fallback on CPU).
    "tp2-sequence-parallel": (
        2,
        ["parallel.tensor_model_parallel_size=2", "parallel.sequence_parallel=true", "model.kernels=csrc"],
    ),
    "tp2-pp2": (4, ["parallel.tensor_model_parallel_size=2", "parallel.pipeline_model_parallel_size=2"]),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_layout_matches_single_process(layout, initial_weights, reference, tmp_path):
    nproc, extra = LAYOUTS[layout]
    run_pretrain(
        nproc,
        BASE
        + extra
        + [
            f"checkpoint.init_from={initial_weights}",
            f"logging.metrics_file={tmp_path / 'm.jsonl'}",
            f"train.exit_after_iters={STEPS}",
        ],
        tmp_path,
    )
    got = read_metrics(tmp_path / "m.jsonl")
    assert sorted(got) == list(range(1, STEPS + 1))
    # The loss must actually move, or equal losses would prove nothing.
    assert got[STEPS]["loss"] < got[1]["loss"] - 0.05
    assert_losses_close(got, reference, range(1, STEPS + 1), rtol=1e-5)


def test_llama_family_tp2_pp2_matches_single_process(tmp_path):
    """The 70B recipe's family (GQA, RoPE, SwiGLU, RMSNorm, untied output) at TP=2 x PP=2 vs one process."""
    base = BASE + ["train.exit_after_iters=6"]
    run_pretrain(
        1, base + ["train.train_iters=0", f"checkpoint.save={tmp_path / 'init'}"], tmp_path, preset="tiny-llama"
    )
    runs = {}
    for name, nproc, extra in (
        ("ref", 1, []),
        ("tp2pp2", 4, ["parallel.tensor_model_parallel_size=2", "parallel.pipeline_model_parallel_size=2"]),
    ):
        metrics = tmp_path / f"{name}.jsonl"
        run_pretrain(
            nproc,
            base + extra + [f"checkpoint.init_from={tmp_path / 'init'}", f"logging.metrics_file={metrics}"],
            tmp_path,
            preset="tiny-llama",
        )
        runs[name] = read_metrics(metrics)
    assert runs["ref"][6]["loss"] < runs["ref"][1]["loss"] - 0.05
    assert_losses_close(runs["tp2pp2"], runs["ref"], range(1, 7), rtol=1e-5)
