"""DPO: the loss and its gradient against a float64 hand computation (the loss function alone, and the task's
loss on a model with an SFT weight); log 2 at the start; it learns."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from chartasks import char_config, chat, positions, use_char_tokenizer
from launch import read_metrics, run_finetune
from toydata import FT_BASE, task_args

from megatron_biomed.data.gpt_dataset import collate
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


def _response_logp64(model, doc) -> torch.Tensor:
    """Float64 summed log-prob of a document's trained labels, the document alone through ``model`` (float64)."""
    x = torch.tensor([[t for t, _, _ in doc]])
    n = x.shape[1]
    logits = model(x, torch.arange(n)[None], None).double()
    lp = F.log_softmax(logits[0], -1).gather(-1, torch.tensor([y for _, y, _ in doc])[:, None])[:, 0]
    return lp[torch.tensor([bool(m) for _, _, m in doc])].sum()


def test_task_loss_with_sft_weight_matches_float64_hand_computation(monkeypatch, tmp_path, single_rank_parallel):
    """The DPO task's loss on one micro-batch of three pairs (out of order), with ``dpo_sft_weight > 0``, and
    its gradient, against float64: policy and reference log-probs summed over each response's labels (masks
    written by hand from the text), the sigmoid loss with beta, plus the weighted SFT term on the chosen side
    (per chosen token). The reference is the starting weights, the policy those weights moved by noise."""
    from inprocess import build, loss_of

    beta, weight = 0.5, 0.3
    records = [
        {"prompt": "hi", "chosen": "red", "rejected": "cat!"},
        {"prompt": "name one", "chosen": "blue sky", "rejected": "dog"},
        {"prompt": "q", "chosen": "ok", "rejected": "no no"},
    ]
    use_char_tokenizer(monkeypatch)
    cfg = char_config(tmp_path, "dpo", records, f"task.dpo_beta={beta}", f"task.dpo_sft_weight={weight}", seq=48)
    task, model = build(cfg)
    samples = task.build_datasets((8, 0))[0].samples
    docs = [(positions(chat(r["prompt"], r["chosen"])), positions(chat(r["prompt"], r["rejected"]))) for r in records]
    tokens_c = [sum(m for _, _, m in c) for c, _ in docs]
    assert tokens_c == [5, 10, 4]

    with torch.no_grad():  # reference: the starting weights, in float64 (as prepare() would store them)
        model.double()
        ref = torch.tensor([[float(_response_logp64(model, d)) for d in pair] for pair in docs], dtype=torch.float64)
        model.float()
        g = torch.Generator().manual_seed(3)
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    task.reference = {"train": ref}

    order = [2, 0, 1]
    batch = collate([samples[i] | {"index": torch.tensor(i)} for i in order])
    model.zero_grad()
    total, n, report = loss_of(task, model, batch)
    total.backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters()}

    model.double()
    model.zero_grad()
    want = torch.zeros((), dtype=torch.float64)
    margins = []
    for i in order:
        pc, pr = (_response_logp64(model, d) for d in docs[i])
        margin = beta * ((pc - ref[i, 0]) - (pr - ref[i, 1]))
        margins.append(float(margin))
        want = want + torch.log1p(torch.exp(-margin)) + weight * (-pc / tokens_c[i])
    want.backward()
    sft_part = sum(weight * -float(_response_logp64(model, docs[i][0])) / tokens_c[i] for i in order)

    assert int(n) == 3
    rel = abs(float(total) - float(want)) / abs(float(want))
    assert rel <= 1e-6, (float(total), float(want))  # measured 1.3e-7
    assert sft_part > 1.0  # the SFT term is a large part of the loss: ignoring it or flipping it fails above
    assert report["dpo loss"].tolist() == pytest.approx([float(want), 3], rel=1e-6)
    assert report["reward_margin"].tolist() == pytest.approx([sum(margins), 3], rel=1e-5, abs=1e-6)
    assert report["reward_accuracy"].tolist() == [sum(m > 0 for m in margins), 3]
    scale = max(p.grad.abs().max().item() for p in model.parameters())
    err = max((grads[k].double() - p.grad).abs().max().item() for k, p in model.named_parameters())
    assert err <= 1e-5 * scale, (err, scale)  # measured 1.2e-6
