"""Checkpoints in megatron-core's dist_checkpointing (torch_dist) format.

Layout (Megatron-LM's): ``<dir>/iter_0000010/`` holds one checkpoint; ``<dir>/latest_checkpointed_iteration.txt``
names the newest complete one. A checkpoint is written under ``iter_XXXXXXX.tmp`` and renamed only after
every rank finished and dist_checkpointing wrote its ``metadata.json``, and the tracker file is replaced
atomically after that, so a crash mid-save never leaves a checkpoint that looks complete.

Because tensors are stored with their global shapes, a checkpoint loads into another TP/PP/DP layout.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.distributed as dist

from megatron_biomed.parallel import cpu

log = logging.getLogger(__name__)

TRACKER = "latest_checkpointed_iteration.txt"
_ITER_RE = re.compile(r"^iter_(\d{7})$")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete or incompatible with this run."""


@dataclass
class TrainState:
    """Everything besides model and optimizer that a resume needs."""

    iteration: int = 0
    consumed_samples: int = 0
    skipped_nonfinite: int = 0


def iteration_dir(root: str | Path, iteration: int) -> Path:
    return Path(root) / f"iter_{iteration:07d}"


def is_complete(path: Path) -> bool:
    # dist_checkpointing writes metadata.json last, after every shard.
    return path.is_dir() and (path / "metadata.json").is_file()


def latest_iteration(root: str | Path) -> Optional[int]:
    """Newest complete checkpoint's iteration, from the tracker file (None if there is none)."""
    tracker = Path(root) / TRACKER
    if not tracker.is_file():
        return None
    text = tracker.read_text().strip()
    if not text.isdigit():
        raise CheckpointError(f"{tracker}: expected an iteration number, found {text!r}")
    iteration = int(text)
    if not is_complete(iteration_dir(root, iteration)):
        raise CheckpointError(
            f"{tracker} names iteration {iteration} but {iteration_dir(root, iteration)} is not a complete checkpoint"
        )
    return iteration


def _rank0() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def _model_key(i: int, n: int) -> str:
    return "model" if n == 1 else f"model{i}"


def _unwrap(chunk):
    return getattr(chunk, "module", chunk)


def _rng_sharded_object():
    from megatron.core import parallel_state as ps
    from megatron.core.dist_checkpointing.mapping import ShardedObject
    from megatron.core.tensor_parallel.random import get_cuda_rng_tracker

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


def _layout() -> dict:
    from megatron.core import parallel_state as ps

    return {
        "tp": ps.get_tensor_model_parallel_world_size(),
        "pp": ps.get_pipeline_model_parallel_world_size(),
        "dp": ps.get_data_parallel_world_size(),
    }


def _sharded_state(
    model,
    optimizer,
    scheduler,
    state: Optional[TrainState],
    use_dist_opt: bool,
    dist_opt_format: str,
    is_loading: bool,
    with_optimizer: bool,
    with_rng: bool,
) -> dict:
    sd = {}
    for i, chunk in enumerate(model):
        sd[_model_key(i, len(model))] = _unwrap(chunk).sharded_state_dict()
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
        sd["layout"] = _layout()
    return sd


def save_checkpoint(
    root: str | Path,
    model,
    optimizer,
    scheduler,
    state: TrainState,
    *,
    use_dist_opt: bool,
    dist_opt_format: str = "fully_reshardable",
    keep_last: int = 0,
) -> Path:
    """Save at ``state.iteration`` (a collective: every rank calls it). Returns the final directory."""
    from megatron.core import dist_checkpointing

    root = Path(root)
    final = iteration_dir(root, state.iteration)
    tmp = final.with_name(final.name + ".tmp")
    if _rank0():
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)  # left by an earlier crash mid-save
        tmp.mkdir()
    _barrier()
    sd = _sharded_state(
        model,
        optimizer,
        scheduler,
        state,
        use_dist_opt,
        dist_opt_format,
        is_loading=False,
        with_optimizer=True,
        with_rng=True,
    )
    dist_checkpointing.save(sd, str(tmp))
    _barrier()
    if _rank0():
        if not is_complete(tmp):
            raise CheckpointError(f"dist_checkpointing did not finish {tmp}")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        tracker_tmp = root / (TRACKER + ".tmp")
        tracker_tmp.write_text(f"{state.iteration}\n")
        os.replace(tracker_tmp, root / TRACKER)
        if keep_last > 0:
            _prune(root, keep_last)
    _barrier()
    return final


def _prune(root: Path, keep_last: int) -> None:
    done = sorted(int(m.group(1)) for p in root.iterdir() if (m := _ITER_RE.match(p.name)) and is_complete(p))
    for iteration in done[:-keep_last]:
        shutil.rmtree(iteration_dir(root, iteration), ignore_errors=True)


def load_checkpoint(
    root: str | Path,
    model,
    optimizer=None,
    scheduler=None,
    *,
    use_dist_opt: bool = False,
    dist_opt_format: str = "fully_reshardable",
    iteration: Optional[int] = None,
    weights_only: bool = False,
) -> Optional[TrainState]:
    """Load the latest (or given) checkpoint of ``root`` into model (and optimizer, scheduler, RNG).

    Returns the TrainState to resume from, or None when ``root`` holds no checkpoint yet.
    """
    from megatron.core import dist_checkpointing

    if iteration is None:
        iteration = latest_iteration(root)
        if iteration is None:
            return None
    path = iteration_dir(root, iteration)
    if not is_complete(path):
        raise CheckpointError(f"{path} is not a complete checkpoint")
    common = dist_checkpointing.load_common_state_dict(str(path))
    with_opt = not weights_only and optimizer is not None
    if with_opt and "optimizer" not in common and "use_distributed_optimizer" not in common:
        raise CheckpointError(f"{path} holds no optimizer state; use checkpoint.init_from to load weights only")
    if with_opt and common.get("use_distributed_optimizer") != use_dist_opt:
        raise CheckpointError(
            f"{path} was saved with use_distributed_optimizer={common.get('use_distributed_optimizer')} but this run "
            f"has {use_dist_opt}; optimizer state does not convert between the two "
            "(set parallel.use_distributed_optimizer "
            "to match, or load weights only with checkpoint.init_from)"
        )
    same_layout = common.get("layout") == _layout()
    sd = _sharded_state(
        model,
        optimizer,
        scheduler,
        None if weights_only else TrainState(),
        use_dist_opt,
        dist_opt_format,
        is_loading=True,
        with_optimizer=with_opt,
        with_rng=same_layout and not weights_only,
    )
    loaded = dist_checkpointing.load(sd, str(path))
    for i, chunk in enumerate(model):
        _unwrap(chunk).load_state_dict(loaded[_model_key(i, len(model))])
    if weights_only:
        return TrainState()
    if with_opt:
        optimizer.load_state_dict(loaded["optimizer"])
        cpu.untie_adam_step_tensors(optimizer)
        scheduler.load_state_dict(loaded["opt_param_scheduler"])
    if "rng_state" in loaded:
        from megatron.core.tensor_parallel.random import get_cuda_rng_tracker

        rng = loaded["rng_state"]
        torch.set_rng_state(rng["cpu"])
        get_cuda_rng_tracker().set_states(rng["tracker"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state(rng["cuda"])
    elif not same_layout:
        log.info(
            "checkpoint layout %s differs from this run's %s: RNG states not restored", common.get("layout"), _layout()
        )
    ts = loaded["train_state"]
    return TrainState(
        iteration=ts["iteration"], consumed_samples=ts["consumed_samples"], skipped_nonfinite=ts["skipped_nonfinite"]
    )
