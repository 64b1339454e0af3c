"""megatron-core optimizer and LR/WD scheduler from our config, with BioMedLM's decoupled AdamW.

Decoupled AdamW (Loshchilov & Hutter; MosaicML Composer's DecoupledAdamW, which BioMedLM trained with)
shrinks weights by ``(lr_t / lr_peak) * wd`` each step, where PyTorch/Megatron AdamW shrink by ``lr_t * wd``.
The two coincide when the Megatron weight decay is ``wd / lr_peak``, so decoupled AdamW is megatron-core's
AdamW with that weight decay: same kernels (PyTorch, Apex or TE), same distributed optimizer, same
checkpoints. BioMedLM's wd 1.6e-5 at lr 1.6e-4 is Megatron weight decay 0.1.

Two more recipe options ride on megatron-core's own mechanisms: layer-wise learning-rate decay is a
``max_lr``/``min_lr`` param-group override per layer (``get_megatron_optimizer``'s ``config_overrides``, merged
with its standard no-decay-on-biases-and-norms overrides), so the scheduler scales every group's warmup, plateau
and decay alike; warmup-stable-decay is OptimizerParamScheduler's "WSD" style.
"""

from __future__ import annotations

import torch
from megatron.core import optimizer as mc_optimizer
from megatron.core.optimizer import OptimizerConfig as MCOptimizerConfig
from megatron.core.optimizer import ParamKey, get_megatron_optimizer, get_standard_config_overrides
from megatron.core.optimizer.optimizer_config import ParamPredicate
from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler

from megatron_biomed.config.experiment import ExperimentConfig
from megatron_biomed.config.training import LR_DECAY_STYLES, OptimizerConfig
from megatron_biomed.parallel.cpu import patch_distrib_optimizer_step_restore


def megatron_weight_decay(opt: OptimizerConfig) -> float:
    """The weight decay to hand megatron-core so that its AdamW implements ``opt.name``."""
    if opt.name == "adamw":
        return opt.weight_decay
    if opt.name == "decoupled_adamw":
        if opt.lr <= 0:
            raise ValueError("optimizer.lr must be > 0 for decoupled_adamw (decay is scaled by lr / lr_peak)")
        return opt.weight_decay / opt.lr
    raise ValueError(f"optimizer.name={opt.name!r}: expected 'adamw' or 'decoupled_adamw'")


def ddp_knobs(cfg: ExperimentConfig) -> dict:
    """The DistributedDataParallelConfig fields set by ``cfg.parallel``'s memory / communication knobs
    (training/loop.py builds the DDP config with them)."""
    p = cfg.parallel
    return {
        "grad_reduce_in_fp32": p.grad_reduce_dtype == "fp32",
        "overlap_param_gather": p.overlap_param_gather,
    }


def parameter_layers(model_chunks: list) -> dict[int, int]:
    """``id(parameter) -> layer number`` (1-based, global over pipeline stages: megatron-core's
    ``layer_number``) for every parameter inside a layer; embedding, final norm and output layer are absent."""
    owner: dict[int, int] = {}
    for chunk in model_chunks:
        claimed: list[str] = []
        for name, module in chunk.named_modules():
            number = getattr(module, "layer_number", None)
            if not isinstance(number, int) or any(name.startswith(c + ".") for c in claimed):
                continue  # the outermost module with a layer number owns its parameters (not its mixer)
            claimed.append(name)
            for param in module.parameters():
                owner[id(param)] = number
    return owner


def layer_lr_multipliers(num_layers: int, decay: float) -> dict[int, float]:
    """Layer-wise learning-rate decay: layer ``l`` (1..num_layers) trains at ``decay ** (num_layers - l)``
    of the rate (LeoYML/BioMamba ft_biomamba/model.py ``get_layer_lr_groups``: the top layer at the full rate)."""
    return {layer: decay ** (num_layers - layer) for layer in range(1, num_layers + 1)}


def layer_lr_overrides(cfg: ExperimentConfig, model_chunks: list) -> dict:
    """megatron-core param-group overrides (``ParamKey`` -> ``{"max_lr", "min_lr"}``) for
    ``optimizer.layer_lr_decay`` ({} when it is 1.0)."""
    opt = cfg.optimizer
    if opt.layer_lr_decay == 1.0:
        return {}
    owner = parameter_layers(model_chunks)
    overrides = {}
    for layer, mult in layer_lr_multipliers(cfg.model.num_layers, opt.layer_lr_decay).items():
        if mult == 1.0:
            # The top layer trains at the configured rates: it stays in the default groups (megatron-core pairs
            # saved and live groups by their settings on load; two groups with equal settings would collide).
            continue
        key = ParamKey(predicate=ParamPredicate(name=f"layer_{layer}", fn=lambda p, n=layer: owner.get(id(p)) == n))
        overrides[key] = {"max_lr": opt.lr * mult, "min_lr": opt.min_lr * mult}
    return overrides


def _gather_params_before_saving(optimizer, model_chunks: list) -> None:
    """With ``overlap_param_gather`` the optimizer step updates only this rank's shard of the parameters;
    the other shards arrive with the next forward's all-gathers (megatron-core marks them pending when the
    gradients are reduced, so an evaluation between steps does gather them). A checkpoint saved between
    steps would write the stale shards, so, as Megatron-LM does before saving, the gather is forced first
    (checkpoint/state.py builds the model's state dict, then this one's, and writes both afterwards)."""
    state_dict = optimizer.sharded_state_dict

    def sharded_state_dict(*args, is_loading: bool = False, **kwargs):
        if not is_loading:
            for chunk in model_chunks:
                chunk.start_param_sync(force_sync=True)
        return state_dict(*args, is_loading=is_loading, **kwargs)

    optimizer.sharded_state_dict = sharded_state_dict


def build_optimizer(cfg: ExperimentConfig, model_chunks: list):
    """(MegatronOptimizer, OptimizerParamScheduler) for the DDP-wrapped model chunks."""

    opt, t = cfg.optimizer, cfg.train
    if opt.lr_decay_style not in LR_DECAY_STYLES:
        raise ValueError(f"optimizer.lr_decay_style={opt.lr_decay_style!r}: expected one of {LR_DECAY_STYLES}")
    wd = megatron_weight_decay(opt)
    mc_config = MCOptimizerConfig(
        optimizer="adam",
        lr=opt.lr,
        min_lr=opt.min_lr,
        weight_decay=wd,
        adam_beta1=opt.adam_beta1,
        adam_beta2=opt.adam_beta2,
        adam_eps=opt.adam_eps,
        clip_grad=opt.clip_grad,
        bf16=t.precision == "bf16",
        fp16=t.precision == "fp16",
        params_dtype={"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[t.precision],
        use_distributed_optimizer=cfg.parallel.use_distributed_optimizer,
        overlap_param_gather=cfg.parallel.overlap_param_gather,
        decoupled_weight_decay=True,
    )
    overrides = get_standard_config_overrides(mc_config) | layer_lr_overrides(cfg, model_chunks)
    optimizer = get_megatron_optimizer(mc_config, model_chunks, config_overrides=overrides)
    if cfg.parallel.overlap_param_gather:
        _gather_params_before_saving(optimizer, model_chunks)
    if mc_optimizer.USING_PYTORCH_OPTIMIZER and cfg.parallel.use_distributed_optimizer:
        patch_distrib_optimizer_step_restore()  # also on GPUs without TE/Apex
    scheduler = build_scheduler(opt, t.train_iters, optimizer, wd)
    return optimizer, scheduler


def build_scheduler(opt: OptimizerConfig, train_iters: int, optimizer, wd: float) -> OptimizerParamScheduler:
    """megatron-core's OptimizerParamScheduler for ``opt`` (linear warmup from 0, then the decay style; each
    param group between its own ``max_lr`` and ``min_lr``)."""
    decay_iters = opt.lr_decay_iters if opt.lr_decay_iters is not None else train_iters
    decay_iters = max(decay_iters, opt.lr_warmup_iters + 1)
    wsd = {}
    if opt.lr_decay_style == "WSD":
        if opt.lr_wsd_decay_iters is None or not 0 < opt.lr_wsd_decay_iters <= decay_iters - opt.lr_warmup_iters:
            raise ValueError(
                "optimizer.lr_decay_style=WSD needs optimizer.lr_wsd_decay_iters in "
                f"1..{decay_iters - opt.lr_warmup_iters} (the decay iterations after warmup), "
                f"got {opt.lr_wsd_decay_iters}"
            )
        wsd = {"wsd_decay_steps": opt.lr_wsd_decay_iters, "lr_wsd_decay_style": opt.lr_wsd_decay_style}
    return OptimizerParamScheduler(
        optimizer,
        init_lr=0.0 if opt.lr_warmup_iters > 0 else opt.lr,
        max_lr=opt.lr,
        min_lr=opt.min_lr,
        lr_warmup_steps=opt.lr_warmup_iters,
        lr_decay_steps=decay_iters,
        lr_decay_style=opt.lr_decay_style,
        start_wd=wd,
        end_wd=wd,
        wd_incr_steps=decay_iters,
        wd_incr_style="constant",
        **wsd,
    )
