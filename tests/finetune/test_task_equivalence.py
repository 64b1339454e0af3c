"""Every fine-tuning task trains at TP2 x PP2 (the multiple-choice head also at TP2 with sequence parallelism; the
NER token head at TP2 with sequence parallelism) exactly as on one process. TP2 alone and PP2 alone are each a
part of TP2 x PP2 (the same head replication across TP ranks, the same last-stage loss); they were run here too
until CI time ran short, and pretraining still checks every layout alone (tests/training/test_parallel_equivalence.py).

From the same pretrained weights (a head, where there is one, initialised from the same seed on the last
stage), each layout runs 4 steps in fp32 with every step updating the weights (constant lr, no warmup). We
compare per step the loss and the gradient norm, and at the end every model tensor and the head's Adam first
moment (an average of its gradients) gathered from the saved checkpoint.

Tolerances, from what correct runs reach (fp32; the order of reductions differs between layouts), as max
relative differences to one process over 12 task x layout runs (every task at TP2, PP2 and TP2 x PP2):
* step 1 (identical weights): loss <= 2.8e-8, grad norm <= 7.0e-7 (DPO: its reference log-probs are
  themselves computed in each layout; the others <= 3.7e-7); allowed 2e-7 and 1.5e-6.
* steps 1-4: loss <= 3.2e-7, grad norm <= 9.3e-7; allowed 1e-6 and 2e-6.
* final tensors (weights and the head's Adam moments), relative to the tensor's largest entry (at least
  1e-2): <= 8.3e-7; allowed 3e-6.
A missing tensor-parallel gradient all-reduce was measured to move the loss by 6.6e-6 and the grad norm by
4e-5 in 10 steps; a head gradient counted once per TP rank would double it.
"""

from __future__ import annotations

import pytest
import torch
from launch import read_metrics, run_finetune
from toydata import FT_BASE, task_args

STEPS = 4
RTOL = {"loss": 1e-6, "grad_norm": 2e-6, "tensor": 3e-6}
RTOL_STEP1 = {"loss": 2e-7, "grad_norm": 1.5e-6}
# Tensors whose gradient is zero by construction (a bias before a softmax over options) hold rounding noise;
# their errors are measured against this floor instead of their own (tiny) scale.
SCALE_FLOOR = 1e-2
LAYOUTS = {
    "tp2": (2, ["parallel.tensor_model_parallel_size=2"]),
    "pp2": (2, ["parallel.pipeline_model_parallel_size=2"]),
    "tp2-pp2": (4, ["parallel.tensor_model_parallel_size=2", "parallel.pipeline_model_parallel_size=2"]),
}
TASKS = ("mc", "classify", "sft", "dpo")
EXTRA = {"dpo": ["task.dpo_beta=0.5"]}
# Adam's eps well above the rounding noise of gradients that are mathematically zero (the multiple-choice
# head's bias and the final norm's bias: a softmax over options ignores a shared shift). With eps 1e-8 Adam
# turns that noise (~1e-10) into full-size steps of random sign and the final weights of two correct runs
# differ by up to lr; with eps 1e-4 every update is a smooth function of the gradient.
# A moderate lr: at 1e-3 the toy head tasks change so fast (loss -40% in 4 steps) that rounding differences
# grow by an order of magnitude per step, and the comparison would measure chaos, not correctness.
COMMON = ["optimizer.adam_eps=1e-4", "optimizer.lr=2e-4"]


def _run(toy, task, nproc, layout, work):
    save = work / "ckpt"
    run_finetune(
        nproc,
        task_args(toy, task) + ["--save", str(save)],
        FT_BASE + COMMON + EXTRA.get(task, []) + layout + [f"logging.metrics_file={work / 'm.jsonl'}"],
        work,
    )
    return read_metrics(work / "m.jsonl"), _tensors(save / f"iter_{STEPS:07d}", work)


def _tensors(ckpt, work) -> dict:
    """Global model tensors and head optimizer moments of a saved checkpoint (one process)."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    out = work / "plain.pt"
    dcp_to_torch_save(ckpt, out)
    sd = torch.load(out, weights_only=False)  # our own file, just written
    keep = {}
    for k, v in sd.items():
        if not isinstance(v, torch.Tensor) or "_extra_state" in k:
            continue
        if not k.startswith("optimizer.") or "head." in k:
            keep[k] = v
    return keep


_REFERENCE: dict = {}


@pytest.fixture
def reference(toy, tmp_path_factory):
    def get(task):
        if task not in _REFERENCE:
            _REFERENCE[task] = _run(toy, task, 1, [], tmp_path_factory.mktemp(f"ref-{task}"))
        return _REFERENCE[task]

    return get


def _close(a: float, b: float, rtol: float) -> bool:
    return abs(a - b) <= rtol * max(abs(b), 1e-12)


# The head under sequence parallelism (its input gathered along the sequence; needs our norm module).
SP_LAYOUT = (2, ["parallel.tensor_model_parallel_size=2", "parallel.sequence_parallel=true", "model.kernels=csrc"])


# Every layout for the multiple-choice head (plus the head under sequence parallelism); the other tasks at
# TP2 x PP2 only, which splits both ways at once (a tensor-parallel or a pipeline bug shows there too), to keep
# CI short. DPO also at TP2 alone: its reference log-probs are gathered over the vocabulary split.
CASES = [(t, "tp2-pp2") for t in TASKS] + [("mc", "tp2-sequence-parallel")]
# The NER token head reads every position: under sequence parallelism (TP2) its input is gathered along the sequence.
CASES += [("ner", "tp2-sequence-parallel")]


@pytest.mark.parametrize("task,layout", CASES)
def test_task_layout_matches_single_process(task, layout, toy, reference, tmp_path):
    ref_metrics, ref_tensors = reference(task)
    nproc, extra = LAYOUTS.get(layout, SP_LAYOUT)
    got_metrics, got_tensors = _run(toy, task, nproc, extra, tmp_path)
    assert sorted(got_metrics) == list(range(1, STEPS + 1))
    main = "loss"
    for it in range(1, STEPS + 1):
        for key in (main, "grad_norm"):
            a, b = got_metrics[it][key], ref_metrics[it][key]
            assert _close(a, b, (RTOL_STEP1 if it == 1 else RTOL)[key]), (
                f"{task} {layout} iteration {it}: {key} {a!r} vs one process {b!r} (rel {abs(a - b) / abs(b):.2e})"
            )
    # Training moved the weights, so equal tensors are not trivially equal.
    assert abs(ref_metrics[STEPS][main] - ref_metrics[1][main]) > 1e-3
    assert set(got_tensors) == set(ref_tensors)
    for k, want in ref_tensors.items():
        got = got_tensors[k]
        assert got.shape == want.shape, k
        err = (got.double() - want.double()).abs().max().item()
        scale = want.double().abs().max().item()
        assert err <= RTOL["tensor"] * max(scale, SCALE_FLOOR), (
            f"{task} {layout} tensor {k}: max error {err:.3e} (scale {scale:.3e})"
        )
    if task in ("mc", "classify", "ner"):
        assert any(k.startswith("optimizer.") and "head." in k for k in ref_tensors), "head moments not compared"
