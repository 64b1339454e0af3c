"""bf16 training: half-precision weights and activations, fp32 main weights in the optimizer."""

from __future__ import annotations

import torch
from launch import BASE, read_metrics, run_pretrain

from megatron_biomed.config import get_preset


def test_bf16_weights_with_fp32_main_params(single_rank_parallel):
    from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig

    from megatron_biomed.models.common import transformer_config
    from megatron_biomed.models.registry import build_model_chunks
    from megatron_biomed.training.optimizer import build_optimizer

    cfg = get_preset("tiny-biomedlm")
    cfg.train.precision = "bf16"
    tconfig = transformer_config(cfg)
    model = DistributedDataParallel(
        tconfig, DistributedDataParallelConfig(grad_reduce_in_fp32=True), build_model_chunks(cfg, tconfig)[0]
    )
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    optimizer, _ = build_optimizer(cfg, [model])
    main = [p for g in optimizer.param_groups for p in g["params"]]
    assert main and {p.dtype for p in main} == {torch.float32}


def test_bf16_run_tracks_fp32_reference(initial_weights, reference, tmp_path):
    run_pretrain(
        1,
        BASE
        + [
            "train.precision=bf16",
            f"checkpoint.init_from={initial_weights}",
            f"logging.metrics_file={tmp_path / 'm.jsonl'}",
            "train.exit_after_iters=10",
        ],
        tmp_path,
    )
    got = read_metrics(tmp_path / "m.jsonl")
    assert got[10]["loss"] < got[1]["loss"] - 0.05
    for it in range(1, 11):
        rel = abs(got[it]["loss"] - reference[it]["loss"]) / reference[it]["loss"]
        assert rel < 2e-2, f"iteration {it}: bf16 {got[it]['loss']} vs fp32 {reference[it]['loss']}"
