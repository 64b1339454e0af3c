"""DPO: the loss and its gradient against a float64 hand computation; log 2 at the start; it learns."""

from __future__ import annotations

import math

import pytest
import torch
from launch import read_metrics, run_finetune
from toydata import FT_BASE, task_args

from megatron_biomed.finetune.dpo import dpo_loss


@pytest.mark.parametrize("beta,sft_weight", [(0.1, 0.0), (0.5, 0.3)])
def test_loss_and_gradient_match_float64_hand_computation(beta, sft_weight):
    g = torch.Generator().manual_seed(7)
    n = 16
    pc, pr, rc, rr = (-(torch.rand(n, generator=g, dtype=torch.float64) * 40 + 1) for _ in range(4))
    tokens_c = torch.randint(1, 30, (n,), generator=g).double()
    pc.requires_grad_(True)
    pr.requires_grad_(True)
    loss, reward_c, reward_r = dpo_loss(pc, pr, rc, rr, beta, sft_weight, tokens_c)
    loss.sum().backward()

    margin = (pc.detach() - rc) - (pr.detach() - rr)
    want = torch.tensor([-math.log(1 / (1 + math.exp(-beta * m))) for m in margin.tolist()], dtype=torch.float64)
    want = want + sft_weight * (-pc.detach() / tokens_c)
    assert torch.allclose(loss.detach(), want, rtol=1e-12, atol=0)
    sig = torch.tensor([1 / (1 + math.exp(beta * m)) for m in margin.tolist()], dtype=torch.float64)
    assert torch.allclose(pc.grad, -beta * sig - sft_weight / tokens_c, rtol=1e-12, atol=1e-15)
    assert torch.allclose(pr.grad, beta * sig, rtol=1e-12, atol=1e-15)
    assert torch.allclose(reward_c, beta * (pc.detach() - rc)) and torch.allclose(reward_r, beta * (pr.detach() - rr))


def test_starts_at_log2_and_learns_the_preference(toy, tmp_path):
    """Reference = the starting policy, so step 1's loss is log 2 exactly (no dropout); a few dozen steps on a
    toy preference set (colour answers over animal answers) put the held-out reward accuracy above chance."""
    steps = 30
    run_finetune(
        1,
        task_args(toy, "dpo") + ["--valid-file", str(toy["pref_valid"]), "--save", str(tmp_path / "ckpt")],
        [o for o in FT_BASE if not o.startswith("train.train_iters")]
        + [f"train.train_iters={steps}", "train.eval_iters=2", "task.dpo_beta=0.5",
           f"logging.metrics_file={tmp_path / 'm.jsonl'}"],
        tmp_path,
    )  # fmt: skip
    train = read_metrics(tmp_path / "m.jsonl")
    assert abs(train[1]["loss"] - math.log(2)) < 1e-6
    assert train[1]["reward_margin"] == pytest.approx(0.0, abs=1e-6)
    valid = read_metrics(tmp_path / "m.jsonl", kind="valid")[steps]
    assert valid["reward_accuracy"] >= 0.75, valid
    assert valid["loss"] < math.log(2) - 0.05
    assert (tmp_path / "ckpt" / "dpo_reference_logps.pt").is_file()
