"""Decoupled AdamW (BioMedLM) against a step computed by hand in float64."""

from __future__ import annotations

import pytest
import torch

from megatron_biomed.config import get_preset
from megatron_biomed.training.optimizer import megatron_weight_decay


def test_weight_decay_translation():
    cfg = get_preset("biomedlm-2.7b")
    assert cfg.optimizer.name == "decoupled_adamw"
    assert megatron_weight_decay(cfg.optimizer) == pytest.approx(0.1)  # 1.6e-5 / 1.6e-4
    cfg.optimizer.name = "adamw"
    assert megatron_weight_decay(cfg.optimizer) == 1.6e-5


@pytest.mark.parametrize("name", ["decoupled_adamw", "adamw"])
def test_one_step_matches_hand_computation(name, single_rank_parallel):
    from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig, finalize_model_grads

    from megatron_biomed.models.common import transformer_config
    from megatron_biomed.models.registry import build_model_chunks
    from megatron_biomed.training.optimizer import build_optimizer

    cfg = get_preset("tiny-biomedlm")
    cfg.optimizer.name = name
    cfg.optimizer.lr = 2e-3
    cfg.optimizer.weight_decay = 0.05
    cfg.optimizer.lr_warmup_iters = 4
    cfg.optimizer.clip_grad = 1e9
    cfg.optimizer.adam_beta1, cfg.optimizer.adam_beta2, cfg.optimizer.adam_eps = 0.9, 0.95, 1e-8
    tconfig = transformer_config(cfg)
    model = DistributedDataParallel(
        tconfig, DistributedDataParallelConfig(grad_reduce_in_fp32=True), build_model_chunks(cfg, tconfig)[0]
    )
    optimizer, scheduler = build_optimizer(cfg, [model])
    scheduler.step(increment=2)  # half-way through warmup: lr_t = lr_peak / 2
    lr_t = optimizer.param_groups[0]["lr"]
    assert lr_t == pytest.approx(cfg.optimizer.lr / 2)

    tokens = torch.randint(0, cfg.model.vocab_size, (2, cfg.model.seq_length))
    pos = torch.arange(cfg.model.seq_length).expand(2, -1)
    mask = torch.tril(torch.ones(cfg.model.seq_length, cfg.model.seq_length)).logical_not()[None, None]
    loss = model(tokens, pos, mask, labels=torch.roll(tokens, -1, 1)).float().mean()
    loss.backward()
    finalize_model_grads([model])

    named = dict(model.module.named_parameters())
    weight = named["decoder.layers.0.mlp.linear_fc1.weight"]
    bias = named["decoder.layers.0.mlp.linear_fc1.bias"]
    before = {
        k: (p.detach().double().clone(), p.main_grad.double().clone()) for k, p in (("weight", weight), ("bias", bias))
    }
    optimizer.step()

    wd = cfg.optimizer.weight_decay
    decay = (lr_t / cfg.optimizer.lr) * wd if name == "decoupled_adamw" else lr_t * wd
    b1, b2, eps = 0.9, 0.95, 1e-8
    for key, p in (("weight", weight), ("bias", bias)):
        p0, g = before[key]
        m_hat = (1 - b1) * g / (1 - b1)
        v_hat = (1 - b2) * g * g / (1 - b2)
        d = decay if key == "weight" else 0.0  # Megatron does not decay biases and norms
        expected = p0 * (1 - d) - lr_t * m_hat / (v_hat.sqrt() + eps)
        torch.testing.assert_close(p.detach().double(), expected, rtol=0, atol=2e-7)
    # The decay really is what separates the two: with decoupled AdamW it is 100x larger here.
    assert (decay > 1e-3) == (name == "decoupled_adamw")
