"""Memory knobs: activation recomputation, gradient reduce dtype, overlap_param_gather.

Each knob must leave the numerics alone (fp32: the same losses and gradients as without it) and must really be
on (recomputation: fewer bytes saved for backward, counted with torch.autograd.graph.saved_tensors_hooks).
"""

from __future__ import annotations

import pytest
import torch
from launch import BASE, assert_losses_close, read_metrics, run_pretrain

from megatron_biomed.config import get_preset
from megatron_biomed.planning.measure import saved_activation_bytes

RECOMPUTE = {
    "none": {},
    "selective": {"recompute_granularity": "selective"},
    "full-uniform-2": {"recompute_granularity": "full", "recompute_method": "uniform", "recompute_num_layers": 2},
    "full-block-1": {"recompute_granularity": "full", "recompute_method": "block", "recompute_num_layers": 1},
    "full-block-per-stage": {
        "recompute_granularity": "full", "recompute_method": "block", "recompute_num_layers_per_stage": [3],
    },
}  # fmt: skip


def _forward_backward(cfg, seed: int = 1234):
    """(loss, {name: grad}, saved activation bytes) of one forward + backward of a fresh model."""
    from megatron_biomed.models.common import transformer_config
    from megatron_biomed.models.registry import build_model_chunks
    from megatron_biomed.parallel import cpu

    cpu.model_parallel_manual_seed(seed)
    model = build_model_chunks(cfg, transformer_config(cfg))[0]
    model.train()
    b, s, v = cfg.train.micro_batch_size, cfg.model.seq_length, cfg.model.vocab_size
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, v, (b, s + 1), generator=gen)
    mask = torch.triu(torch.ones(1, 1, s, s, dtype=torch.bool), diagonal=1)
    pos = torch.arange(s).unsqueeze(0).expand(b, s)
    with saved_activation_bytes(model) as saved:
        loss = model(tokens[:, :-1], pos, mask, labels=tokens[:, 1:]).mean()
    held = saved.total  # before backward frees the graph
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()}, held


@pytest.mark.parametrize("preset", ["tiny-biomedlm", "tiny-llama"])
def test_recomputation_keeps_numerics_and_saves_less(preset, single_rank_parallel):
    results = {}
    for name, knobs in RECOMPUTE.items():
        cfg = get_preset(preset)
        for k, val in knobs.items():
            setattr(cfg.train, k, val)
        results[name] = _forward_backward(cfg)
    loss0, grads0, bytes0 = results["none"]
    for name, (loss, grads, nbytes) in results.items():
        assert loss == loss0, f"{name}: loss {loss} vs {loss0} without recomputation"
        for n, g in grads.items():
            assert torch.equal(g, grads0[n]), f"{name}: gradient of {n} differs (max {(g - grads0[n]).abs().max()})"
    saved = {name: r[2] for name, r in results.items()}
    # Selective drops the attention scores / probabilities; full keeps only the inputs of the recomputed
    # layers; block recomputes fewer layers the fewer it is told to.
    assert saved["selective"] < saved["none"]
    assert saved["full-uniform-2"] < saved["selective"]
    assert saved["full-block-per-stage"] < saved["full-block-1"] < saved["none"]


def test_gradient_buffers_follow_grad_reduce_dtype(single_rank_parallel):
    from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig

    from megatron_biomed.models.common import transformer_config
    from megatron_biomed.models.registry import build_model_chunks
    from megatron_biomed.parallel import cpu
    from megatron_biomed.training.optimizer import ddp_knobs

    grads = {}
    for dtype in ("fp32", "bf16"):
        cfg = get_preset("tiny-biomedlm")
        cfg.train.precision = "bf16"
        cfg.parallel.grad_reduce_dtype = dtype
        tconfig = transformer_config(cfg)
        cpu.model_parallel_manual_seed(1234)
        model = DistributedDataParallel(
            tconfig, DistributedDataParallelConfig(**ddp_knobs(cfg)), build_model_chunks(cfg, tconfig)[0]
        )
        want = torch.float32 if dtype == "fp32" else torch.bfloat16
        assert {p.main_grad.dtype for p in model.parameters()} == {want}
        s = cfg.model.seq_length
        tokens = torch.randint(0, 512, (2, s + 1), generator=torch.Generator().manual_seed(0))
        mask = torch.triu(torch.ones(1, 1, s, s, dtype=torch.bool), diagonal=1)
        pos = torch.arange(s).unsqueeze(0).expand(2, s)
        model(tokens[:, :-1], pos, mask, labels=tokens[:, 1:]).float().mean().backward()
        grads[dtype] = [p.main_grad.float().clone() for p in model.parameters()]
    # One micro-batch, one rank: the bf16 gradients land unchanged in either buffer.
    for a, b in zip(grads["fp32"], grads["bf16"]):
        assert torch.equal(a, b)


def test_overlap_param_gather_defers_the_gather_to_forward_hooks(single_rank_parallel):
    """Really on: the optimizer step leaves the parameter all-gather to forward pre-hooks on every module."""
    from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig

    from megatron_biomed.models.common import transformer_config
    from megatron_biomed.models.registry import build_model_chunks
    from megatron_biomed.training.optimizer import ddp_knobs

    cfg = get_preset("tiny-biomedlm")
    cfg.parallel.use_distributed_optimizer = cfg.parallel.overlap_grad_reduce = True
    for on in (False, True):
        cfg.parallel.overlap_param_gather = on
        tconfig = transformer_config(cfg)
        ddp = DistributedDataParallelConfig(**ddp_knobs(cfg), use_distributed_optimizer=True, overlap_grad_reduce=True)
        model = DistributedDataParallel(tconfig, ddp, build_model_chunks(cfg, tconfig)[0])
        assert bool(model.remove_forward_pre_hook_handles) == on


STEPS = 6
EVAL = ["train.eval_interval=2", "train.eval_iters=1"]


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    work = tmp_path_factory.mktemp("knobs-ref")
    run_pretrain(1, BASE + EVAL + [f"train.train_iters={STEPS}", f"logging.metrics_file={work / 'm.jsonl'}"], work)
    return read_metrics(work / "m.jsonl"), read_metrics(work / "m.jsonl", kind="valid")


def test_full_recomputation_run_matches(baseline, tmp_path):
    run_pretrain(
        1,
        BASE + EVAL + [
            f"train.train_iters={STEPS}", f"logging.metrics_file={tmp_path / 'm.jsonl'}",
            "train.recompute_granularity=full", "train.recompute_method=block", "train.recompute_num_layers=3",
        ],
        tmp_path,
    )  # fmt: skip
    train, _ = baseline
    got = read_metrics(tmp_path / "m.jsonl")
    assert train[STEPS]["loss"] < train[1]["loss"] - 0.05
    assert_losses_close(got, train, range(1, STEPS + 1), rtol=1e-6)


def test_overlap_param_gather_matches_one_process(baseline, tmp_path):
    """DP=2, distributed optimizer, gradient reduce and parameter all-gather overlapped: the same training
    losses as one process, and evaluations between steps see the updated weights (a stale gather would not)."""
    run_pretrain(
        2,
        BASE + EVAL + [
            f"train.train_iters={STEPS}", f"logging.metrics_file={tmp_path / 'm.jsonl'}",
            "parallel.use_distributed_optimizer=true", "parallel.overlap_grad_reduce=true",
            "parallel.overlap_param_gather=true",
            # Saving forces the pending parameter all-gathers first (training/optimizer.py).
            f"checkpoint.save={tmp_path / 'ckpt'}", f"checkpoint.save_interval={STEPS}",
        ],
        tmp_path,
    )  # fmt: skip
    train, valid = baseline
    assert_losses_close(read_metrics(tmp_path / "m.jsonl"), train, range(1, STEPS + 1), rtol=1e-5)
    got_valid = read_metrics(tmp_path / "m.jsonl", kind="valid")
    assert sorted(got_valid) == sorted(valid) and valid
    assert_losses_close(got_valid, valid, sorted(valid), rtol=1e-5)


@pytest.mark.parametrize(
    "train,parallel,rule",
    [
        (dict(recompute_granularity="partial"), {}, "recompute_granularity='partial' is not one of"),
        (dict(recompute_granularity="full"), {}, "needs train.recompute_method in uniform, block"),
        (dict(recompute_granularity="full", recompute_method="uniform"), {}, "needs train.recompute_num_layers"),
        (
            dict(recompute_granularity="full", recompute_method="uniform", recompute_num_layers=3),
            dict(pipeline_model_parallel_size=2),
            "recompute_num_layers (3) must be in 1..2",
        ),
        (
            dict(recompute_granularity="full", recompute_method="block", recompute_num_layers_per_stage=[2]),
            dict(pipeline_model_parallel_size=2),
            "has 1 entries; give one per pipeline stage (PP = 2)",
        ),
        (dict(recompute_granularity="selective", recompute_num_layers=2), {}, "leave recompute_method"),
        (dict(recompute_method="block"), {}, "train.recompute_granularity is not"),
        ({}, dict(grad_reduce_dtype="bf16"), "grad_reduce_dtype='bf16' needs train.precision=bf16"),
        ({}, dict(overlap_param_gather=True), "overlap_param_gather needs parallel.use_distributed_optimizer"),
        (
            {},
            dict(overlap_param_gather=True, use_distributed_optimizer=True),
            "overlap_param_gather needs parallel.overlap_grad_reduce",
        ),
    ],
)
def test_knob_rules_are_spelled_out(train, parallel, rule):
    from megatron_biomed.parallel.layout import layout_problems

    cfg = get_preset("tiny-biomedlm")
    for k, v in train.items():
        setattr(cfg.train, k, v)
    for k, v in parallel.items():
        setattr(cfg.parallel, k, v)
    problems = layout_problems(cfg, 2)
    assert any(rule in p for p in problems), problems


def test_per_stage_recompute_on_two_stages(tmp_path):
    """PP = 2 on two ranks, recompute_num_layers_per_stage = [2, 0]: stage 0 recomputes both its layers and
    saves less for backward, stage 1 recomputes none and saves exactly as much as without recomputation; on
    both, the loss and every gradient are bit-identical to no recomputation."""
    import json
    from pathlib import Path

    from launch import run_tool

    script = Path(__file__).with_name("pp_recompute_measure.py")
    run_tool(script, 2, [str(tmp_path), "2", "0"], tmp_path, timeout=300)
    rows = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    by_stage = {row["stage"]: row for row in rows}
    assert sorted(by_stage) == [0, 1]
    for row in rows:
        assert row["identical"] and row["gradients"] > 0, row
    first, last = by_stage[0], by_stage[1]
    assert first["recomputed_layers"] == 2 and last["recomputed_layers"] == 0
    assert first["saved_with"] < 0.5 * first["saved_without"], first
    assert last["saved_with"] == last["saved_without"], last


def test_per_stage_recompute_reads_this_stage(monkeypatch):
    from megatron.core import parallel_state as ps

    from megatron_biomed.models.common import recompute_settings

    cfg = get_preset("tiny-biomedlm")
    cfg.parallel.pipeline_model_parallel_size = 2
    cfg.train.recompute_granularity, cfg.train.recompute_method = "full", "block"
    cfg.train.recompute_num_layers_per_stage = [2, 0]
    monkeypatch.setattr(ps, "model_parallel_is_initialized", lambda: True)
    for stage, want in ((0, 2), (1, 0)):
        monkeypatch.setattr(ps, "get_pipeline_model_parallel_rank", lambda stage=stage: stage)
        assert recompute_settings(cfg)["recompute_num_layers"] == want
