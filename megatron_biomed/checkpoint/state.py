"""What a checkpoint holds, as the sharded state dict that megatron-core's dist_checkpointing saves and loads.

Model chunks (``model``, or ``model0``, ``model1``... with virtual pipeline stages), the optimizer (its own
sharded state dict; distributed or not), the scheduler, the train state (iteration, consumed samples, skipped
steps), every rank's RNG states and the layout they belong to, and the checkpoint format. Because tensors are
stored with their global shapes, a checkpoint loads into another TP / PP / DP layout (the RNG states only into
the same layout).

Besides the model, a checkpoint may hold other copies of its weights (``extra_models``, e.g. training/ema.py's
moving average under ``ema``): the same sharded state dict with every tensor key prefixed by the name, listed
in the common state's ``extra_models`` so a load knows whether they are there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

import torch
from megatron.core import parallel_state as ps
from megatron.core.dist_checkpointing.mapping import ShardedObject
from megatron.core.tensor_parallel.random import get_cuda_rng_tracker

from megatron_biomed.parallel import cpu

# Recorded in the common state; 2 = the save wrote manifest.json (so a missing manifest means damage).
CHECKPOINT_FORMAT = 2


@dataclass
class TrainState:
    """Everything besides model and optimizer that a resume needs."""

    iteration: int = 0
    consumed_samples: int = 0
    skipped_nonfinite: int = 0


class NoOptimizer:
    """The optimizer and scheduler of a weights-only save (an imported model): contributes no state. Training
    from such a checkpoint starts with ``checkpoint.init_from`` (weights only), as from any pretrained one."""

    def sharded_state_dict(self, *args, **kwargs):
        return {}

    def state_dict(self):
        return {}


def model_key(i: int, n: int) -> str:
    """The state-dict key of model chunk ``i`` of ``n``."""
    return "model" if n == 1 else f"model{i}"


def unwrap(chunk):
    """The model inside a DDP wrapper (or the chunk itself)."""
    return getattr(chunk, "module", chunk)


def chunk_state(chunk, prefix: str = "") -> dict:
    """A model chunk's sharded state dict with every tensor stored under ``prefix`` + its name, keyed by the
    plain names (so ``load_state_dict`` takes what a load returns for it)."""
    sd = unwrap(chunk).sharded_state_dict(prefix=prefix)
    return {k[len(prefix) :] if k.startswith(prefix) else k: v for k, v in sd.items()}


def extra_key(name: str, i: int, n: int) -> str:
    """The state-dict key of chunk ``i`` of ``n`` of the extra weights ``name``."""
    return f"{name}.{model_key(i, n)}"


def parallel_layout() -> dict:
    """This run's TP / PP / DP sizes, as a checkpoint records them."""
    return {
        "tp": ps.get_tensor_model_parallel_world_size(),
        "pp": ps.get_pipeline_model_parallel_world_size(),
        "dp": ps.get_data_parallel_world_size(),
    }


def _rng_sharded_object() -> ShardedObject:
    state = {"cpu": torch.get_rng_state(), "tracker": get_cuda_rng_tracker().get_states()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    shape = (
        ps.get_pipeline_model_parallel_world_size(),
        ps.get_tensor_model_parallel_world_size(),
        ps.get_data_parallel_world_size(),
    )
    offset = (ps.get_pipeline_model_parallel_rank(), ps.get_tensor_model_parallel_rank(), ps.get_data_parallel_rank())
    return ShardedObject("rng_state", state, shape, offset, replica_id=0)


def restore_rng(rng: dict) -> None:
    """Set this rank's RNG states to those a checkpoint saved (``sharded_state(..., with_rng=True)``)."""
    torch.set_rng_state(rng["cpu"])
    get_cuda_rng_tracker().set_states(rng["tracker"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng["cuda"])


def sharded_state(
    model,
    optimizer,
    scheduler,
    state: Optional[TrainState],
    use_dist_opt: bool,
    dist_opt_format: str,
    is_loading: bool,
    with_optimizer: bool,
    with_rng: bool,
    extra_models: Optional[Mapping[str, list]] = None,
    weights_from: str = "model",
) -> dict:
    """The sharded state dict a save writes, or a load fills (``is_loading``). ``state`` None: no train state
    (a weights-only load); ``with_rng``: this rank's RNG states and the layout; ``extra_models``: name -> chunks
    of other weights saved or loaded alongside; ``weights_from``: load the model from those saved as this
    extra name instead of its own."""
    sd = {}
    prefix = "" if weights_from == "model" else f"{weights_from}."
    for i, chunk in enumerate(model):
        sd[model_key(i, len(model))] = chunk_state(chunk, prefix)
    extra_models = extra_models or {}
    for name, chunks in extra_models.items():
        for i, chunk in enumerate(chunks):
            sd[extra_key(name, i, len(chunks))] = chunk_state(chunk, f"{name}.")
    if with_optimizer:
        if is_loading:
            # Empty PyTorch Adam states cannot describe what they will load (see cpu.init_empty_adam_states).
            cpu.init_empty_adam_states(optimizer)
        metadata = {"distrib_optim_sharding_type": dist_opt_format} if use_dist_opt else None
        sd["optimizer"] = optimizer.sharded_state_dict(sd, is_loading=is_loading, metadata=metadata)
        sd["opt_param_scheduler"] = scheduler.state_dict()
        sd["use_distributed_optimizer"] = use_dist_opt
    if state is not None:
        sd["train_state"] = {
            "iteration": state.iteration,
            "consumed_samples": state.consumed_samples,
            "skipped_nonfinite": state.skipped_nonfinite,
        }
    if with_rng:
        sd["rng_state"] = _rng_sharded_object()
        sd["layout"] = parallel_layout()
    if not is_loading:
        sd["checkpoint_format"] = CHECKPOINT_FORMAT
        sd["extra_models"] = sorted(extra_models)
    return sd
