"""Layout validation refuses broken layouts before any work, naming each rule."""

import re

import pytest

from megatron_biomed.config import get_preset
from megatron_biomed.parallel.layout import LayoutError, layout_problems, validate_layout


def cfg_with(preset="tiny-biomedlm", **parallel):
    cfg = get_preset(preset)
    for k, v in parallel.items():
        setattr(cfg.parallel, k, v)
    return cfg


def test_valid_layouts_pass():
    validate_layout(cfg_with(tensor_model_parallel_size=2, pipeline_model_parallel_size=2), 4)
    validate_layout(cfg_with(tensor_model_parallel_size=2, pipeline_model_parallel_size=2), 8)
    validate_layout(cfg_with("tiny-llama", tensor_model_parallel_size=2), 2)
    big = get_preset("biomedlm-2.7b")
    big.parallel.tensor_model_parallel_size = 4
    validate_layout(big, 128)


@pytest.mark.parametrize(
    "world,parallel,rule",
    [
        (3, dict(tensor_model_parallel_size=2), "world size 3 must equal TP x PP x DP"),
        (3, dict(tensor_model_parallel_size=3), "TP (3) must divide num_attention_heads (4)"),
        (6, dict(pipeline_model_parallel_size=3), "PP (3) = 3 must divide num_layers (4)"),
        (
            4,
            dict(pipeline_model_parallel_size=2, virtual_pipeline_model_parallel_size=2, batch_p2p_comm=True),
            "batch_p2p_comm=True with virtual pipeline parallelism",
        ),
        (1, dict(sequence_parallel=True), "sequence_parallel needs tensor_model_parallel_size > 1"),
        (2, dict(tensor_model_parallel_size=2, sequence_parallel=True), "sequence_parallel needs model.kernels=auto"),
    ],
)
def test_broken_rules_are_spelled_out(world, parallel, rule):
    with pytest.raises(LayoutError, match=re.escape(rule)):
        validate_layout(cfg_with(**parallel), world)


def test_kv_groups_must_be_divisible_by_tp():
    cfg = cfg_with("tiny-llama", tensor_model_parallel_size=4)  # 2 KV groups
    assert any("must divide num_query_groups (2" in p for p in layout_problems(cfg, 4))


def test_global_batch_must_split_into_microbatches():
    cfg = cfg_with()
    cfg.train.global_batch_size = 6
    cfg.train.micro_batch_size = 2
    assert any("global_batch_size (6) must be a multiple" in p for p in layout_problems(cfg, 2))


def test_all_problems_reported_together():
    cfg = cfg_with(tensor_model_parallel_size=3, pipeline_model_parallel_size=3)
    assert len(layout_problems(cfg, 10)) >= 3


def test_distributed_optimizer_needs_reshardable_checkpoints():
    cfg = cfg_with(use_distributed_optimizer=True)
    cfg.checkpoint.dist_optimizer_format = "dp_reshardable"
    assert any("fully_reshardable" in p for p in layout_problems(cfg, 2))


def test_vocab_is_padded_to_tp_times_128():
    cfg = get_preset("biomedlm-2.7b")
    assert cfg.model.padded_vocab_size(1) == 28928
    assert cfg.model.padded_vocab_size(8) % (8 * 128) == 0 and cfg.model.padded_vocab_size(8) >= 28896


def test_pretrain_refuses_bad_layout_before_work(tmp_path):
    from launch import run_pretrain

    proc = run_pretrain(1, ["data.mock=true", "parallel.tensor_model_parallel_size=3"], tmp_path, check=False)
    assert proc.returncode == 2
    assert "TP (3) must divide num_attention_heads (4)" in proc.stderr
    assert "Traceback" not in proc.stderr
