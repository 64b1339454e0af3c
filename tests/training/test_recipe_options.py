"""The optimizer options of the BioMamba recipe: the warmup-stable-decay schedule against the authors' formula
(LeoYML/BioMamba ft_biomamba/trainer.py get_wsd_schedule), layer-wise learning-rate decay against the hand
formula per parameter, and the EMA of the weights against a float64 recurrence, its save / resume (bit for bit),
its load as the weights and its export."""

from __future__ import annotations

import math
import re

import pytest
import torch

from megatron_biomed.config import get_preset
from megatron_biomed.config.training import OptimizerConfig
from megatron_biomed.training.optimizer import build_scheduler


def authors_wsd(step: int, warmup: int, stable: int, decay: int, min_ratio: float) -> float:
    """LeoYML/BioMamba ft_biomamba/trainer.py get_wsd_schedule's multiplier of the peak rate at ``step``."""
    if step < warmup:
        return step / max(1, warmup)
    if step < warmup + stable:
        return 1.0
    progress = (step - warmup - stable) / max(1, decay)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class _Groups:
    """What OptimizerParamScheduler touches of an optimizer: its param groups."""

    def __init__(self, groups):
        self.param_groups = groups


@pytest.mark.parametrize("steps", [5964, 37])
def test_wsd_is_the_authors_schedule(steps):
    warmup, stable = int(0.10 * steps), int(0.65 * steps)
    decay = steps - warmup - stable
    lr = 5e-6
    opt = OptimizerConfig(lr=lr, min_lr=0.1 * lr, lr_decay_style="WSD", lr_warmup_iters=warmup,
                          lr_wsd_decay_iters=decay, lr_wsd_decay_style="cosine")  # fmt: skip
    groups = _Groups([{"params": []}, {"params": [], "max_lr": 0.5 * lr, "min_lr": 0.05 * lr}])
    scheduler = build_scheduler(opt, steps, groups, wd=0.0)
    # torch's LambdaLR (the authors') gives the update of optimizer step k (1-based) the rate lambda(k - 1);
    # megatron-core's scheduler has stepped k - 1 times before step k.
    for k in range(1, steps + 1):
        want = lr * authors_wsd(k - 1, warmup, stable, decay, 0.1)
        assert groups.param_groups[0]["lr"] == pytest.approx(want, rel=1e-12, abs=1e-20), k
        assert groups.param_groups[1]["lr"] == pytest.approx(0.5 * want, rel=1e-12, abs=1e-20), k
        scheduler.step(1)


def test_wsd_needs_its_decay_iters():
    opt = OptimizerConfig(lr=1e-3, lr_decay_style="WSD", lr_warmup_iters=2)
    with pytest.raises(ValueError, match="lr_wsd_decay_iters"):
        build_scheduler(opt, 10, _Groups([{"params": []}]), wd=0.0)


def test_layer_lr_decay_per_parameter(single_rank_parallel):
    from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig

    from megatron_biomed.models.common import transformer_config
    from megatron_biomed.models.registry import build_model_chunks
    from megatron_biomed.training.optimizer import build_optimizer

    cfg = get_preset("tiny-mamba")
    decay, lr, min_lr, warmup = 0.7, 2e-3, 1e-4, 4
    cfg.optimizer.layer_lr_decay, cfg.optimizer.lr, cfg.optimizer.min_lr = decay, lr, min_lr
    cfg.optimizer.lr_warmup_iters = warmup
    tconfig = transformer_config(cfg)
    model = DistributedDataParallel(tconfig, DistributedDataParallelConfig(), build_model_chunks(cfg, tconfig)[0])
    optimizer, scheduler = build_optimizer(cfg, [model])
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    num_layers = cfg.model.num_layers
    t_total = cfg.train.train_iters
    for step in (2, 9):  # in warmup, then in the cosine decay
        scheduler.step(step - scheduler.num_steps)
        if step <= warmup:
            base, base_min = lr * step / warmup, None
        else:
            c = 0.5 * (math.cos(math.pi * (step - warmup) / (t_total - warmup)) + 1.0)
            base, base_min = None, c
        checked = set()
        for name, param in model.module.named_parameters():
            m = re.match(r"decoder\.layers\.(\d+)\.", name)
            mult = decay ** (num_layers - (int(m.group(1)) + 1)) if m else 1.0
            want = base * mult if base is not None else min_lr * mult + base_min * (lr - min_lr) * mult
            assert group_of[id(param)]["lr"] == pytest.approx(want, rel=1e-12), (step, name)
            checked.add(round(mult, 12))
        assert len(checked) == num_layers  # every layer's multiplier (the top layer's is 1, as the embedding's)


def _ema_config(ck, **extra):
    from megatron_biomed.config.loading import load_config

    sets = {"data.mock": "true", "train.train_iters": 3, "train.eval_iters": 0, "optimizer.ema_decay": 0.75,
            "optimizer.layer_lr_decay": 0.8, "checkpoint.save": ck, "checkpoint.load": ck, **extra}  # fmt: skip
    return load_config("tiny-mamba", overrides=[f"{k}={v}" for k, v in sets.items()])


def test_ema_is_the_recurrence_and_resumes_bit_for_bit(tmp_path):
    from safetensors.torch import load_file

    from megatron_biomed.checkpoint import load_checkpoint
    from megatron_biomed.checkpoint.state import unwrap
    from megatron_biomed.convert.exporter import CheckpointTensors, export_hf
    from megatron_biomed.data.gpt_dataset import MicroBatchIterator
    from megatron_biomed.parallel.env import DistEnv, find_free_port
    from megatron_biomed.parallel.initialize import initialize_parallel, shutdown_parallel
    from megatron_biomed.training.loop import Trainer
    from megatron_biomed.training.pretrain import token_info

    ck = tmp_path / "ck"
    cfg = _ema_config(ck)
    ctx = initialize_parallel(cfg, DistEnv(0, 1, 0, "127.0.0.1", find_free_port(), "single"))
    try:
        trainer = Trainer(cfg, ctx, token_info(cfg))
        trainer.load()  # fresh: the average starts at the initial weights

        def weights():
            return {k: p.detach().double().clone() for k, p in unwrap(trainer.model[0]).named_parameters()}

        hand = weights()
        data = MicroBatchIterator(trainer.train_ds, cfg.train.micro_batch_size, dp_rank=0, dp_size=1)
        d = cfg.optimizer.ema_decay
        for it in range(1, 4):
            assert not trainer.train_step(data, it).skipped
            hand = {k: d * hand[k] + (1 - d) * w for k, w in weights().items()}
        trained = weights()
        ema = {k: p.detach().clone() for k, p in trainer.ema.chunks[0].named_parameters()}
        for k, v in ema.items():
            assert v.dtype == torch.float32
            torch.testing.assert_close(v.double(), hand[k], rtol=1e-6, atol=1e-7)
        assert not torch.allclose(ema["embedding.word_embeddings.weight"].double(),
                                  trained["embedding.word_embeddings.weight"])  # fmt: skip
        # Validation on the average swaps it in and puts the trained weights back.
        with trainer.ema.swapped_in(trainer.model):
            assert all(torch.equal(p.detach().float(), ema[k])
                       for k, p in unwrap(trainer.model[0]).named_parameters())  # fmt: skip
        assert all(torch.equal(w, trained[k]) for k, w in weights().items())

        trainer.state.iteration = 3
        trainer.save(final=True)
        resumed = Trainer(cfg, ctx, token_info(cfg))
        resumed.load()
        assert resumed.state.iteration == 3
        for k, v in resumed.ema.chunks[0].named_parameters():
            assert torch.equal(v, ema[k]), k
        # Loaded as the weights (evaluation, generation: weights_from="ema"), and exported (--weights ema).
        load_checkpoint(ck, resumed.model, weights_only=True, weights_from="ema")
        for k, p in unwrap(resumed.model[0]).named_parameters():
            assert torch.equal(p.detach(), ema[k]), k
        stored = CheckpointTensors(ck / "iter_0000003", "ema.")
        emb = "embedding.word_embeddings.weight"
        assert stored.shape(emb) == tuple(ema[emb].shape) and stored.dtype(emb) == torch.float32
        export_hf(ck, tmp_path / "hf", weights="ema")
        exported = load_file(str(tmp_path / "hf" / "model.safetensors"))
        vocab = cfg.model.vocab_size
        assert torch.equal(exported["backbone.embeddings.weight"], ema[emb][:vocab])

        # A run without the average resumes from a checkpoint that has one (the average is left unread).
        plain = Trainer(_ema_config(ck, **{"optimizer.ema_decay": 0.0}), ctx, token_info(cfg))
        plain.load()
        assert plain.ema is None and plain.state.iteration == 3
    finally:
        shutdown_parallel()
