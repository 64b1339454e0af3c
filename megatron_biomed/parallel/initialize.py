"""Start torch.distributed from the launcher's environment and build megatron-core's parallel state."""

from __future__ import annotations

import copy
import datetime
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from megatron.core import parallel_state as ps

from megatron_biomed.config.experiment import ExperimentConfig
from megatron_biomed.parallel import cpu
from megatron_biomed.parallel.env import DistEnv, LaunchEnvError, find_free_port, read_dist_env
from megatron_biomed.parallel.layout import data_parallel_size, validate_layout

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParallelContext:
    env: DistEnv
    backend: str
    tp: int
    pp: int
    vpp: int | None
    dp: int
    device: torch.device

    def describe(self) -> str:
        return (
            f"world_size {self.env.world_size} ({self.env.launcher}, {self.backend}): "
            f"tensor_model_parallel_size {self.tp}, pipeline_model_parallel_size {self.pp}, "
            f"virtual_pipeline_model_parallel_size {self.vpp}, data_parallel_size {self.dp}"
        )


def initialize_parallel(cfg: ExperimentConfig, env: DistEnv | None = None) -> ParallelContext:
    """Validate the layout, start the process group (nccl on GPU, gloo on CPU) and megatron-core's groups."""
    env = env or read_dist_env()
    validate_layout(cfg, env.world_size)
    p = cfg.parallel
    use_cuda = torch.cuda.is_available()
    backend = p.backend if p.backend != "auto" else ("nccl" if use_cuda else "gloo")
    if not use_cuda:
        cpu.apply_cpu_patches()
    device = rank_device(env) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        # The rendezvous waits up to init_timeout_s for every rank to arrive; each collective afterwards up to
        # collective_timeout_s (gloo and nccl take the process group's timeout for both unless split so).
        store, _, _ = next(
            dist.rendezvous(
                f"tcp://{env.master_addr}:{env.master_port}",
                env.rank,
                env.world_size,
                timeout=datetime.timedelta(seconds=p.init_timeout_s),
            )
        )
        # Under torchrun the store is its agent's, kept across the restarts of --max-restarts: keys of the
        # failed attempt (the ranks' gloo addresses among them) must not be read by the next one.
        store = dist.PrefixStore(f"attempt{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)
        dist.init_process_group(
            backend=backend,
            store=store,
            rank=env.rank,
            world_size=env.world_size,
            timeout=datetime.timedelta(seconds=p.collective_timeout_s),
        )
    if ps.model_parallel_is_initialized():
        ps.destroy_model_parallel()
    ps.initialize_model_parallel(
        tensor_model_parallel_size=p.tensor_model_parallel_size,
        pipeline_model_parallel_size=p.pipeline_model_parallel_size,
        virtual_pipeline_model_parallel_size=p.virtual_pipeline_model_parallel_size,
        # megatron-core's own groups default to 30 minutes; a fraction of a minute is fine (timedelta).
        distributed_timeout_minutes=p.collective_timeout_s / 60,
    )
    cpu.model_parallel_manual_seed(cfg.train.seed)
    return ParallelContext(
        env=env,
        backend=backend,
        tp=p.tensor_model_parallel_size,
        pp=p.pipeline_model_parallel_size,
        vpp=p.virtual_pipeline_model_parallel_size,
        dp=data_parallel_size(cfg, env.world_size),
        device=device,
    )


def rank_device(env: DistEnv) -> torch.device:
    """This rank's GPU: ``cuda:LOCAL_RANK``, one GPU per rank. Fewer GPUs visible than ranks on the node raises
    LaunchEnvError naming both numbers and what to do (on every rank of the node when the launcher says how many
    ranks it started here, so none waits at the rendezvous for the ones that failed)."""
    visible = torch.cuda.device_count()
    ranks_here = env.local_world_size
    if env.local_rank < visible and (ranks_here is None or ranks_here <= visible):
        return torch.device("cuda", env.local_rank)
    shown = os.environ.get("CUDA_VISIBLE_DEVICES")
    where = f" (CUDA_VISIBLE_DEVICES={shown})" if shown is not None else ""
    started = f"{ranks_here} ranks on this node" if ranks_here is not None else f"local rank {env.local_rank}"
    raise LaunchEnvError(
        f"{started} but {visible} GPU(s) visible{where}: each rank needs a GPU of its own (rank {env.rank} has "
        f"LOCAL_RANK {env.local_rank}). Start at most {visible} rank(s) per node (torchrun --nproc-per-node "
        f"{visible}, srun --ntasks-per-node {visible}) with a layout for that many, or run the ranks on CPU with "
        "gloo: CUDA_VISIBLE_DEVICES= (no GPU visible) and parallel.backend=auto or gloo."
    )


def set_model_only_layout(cfg: ExperimentConfig, tensor_model_parallel_size: int) -> None:
    """Set ``cfg``'s layout, in place, for running a model without training it (evaluation of one process,
    generation): ``tensor_model_parallel_size`` ranks, no pipeline, no sequence parallelism, no distributed
    optimizer, one micro-batch per step."""
    p = cfg.parallel
    p.tensor_model_parallel_size, p.pipeline_model_parallel_size = tensor_model_parallel_size, 1
    p.virtual_pipeline_model_parallel_size, p.sequence_parallel = None, False
    p.use_distributed_optimizer = False
    cfg.train.global_batch_size = cfg.train.micro_batch_size


def single_process_config(cfg: ExperimentConfig, padded_vocab: int | None = None) -> ExperimentConfig:
    """``cfg`` at TP = PP = 1 (megatron-core's parallel state started for one process), with the vocabulary
    padded to ``padded_vocab`` rows when given (a checkpoint saved at TP > 1 pads to a larger multiple)."""
    one = copy.deepcopy(cfg)
    if padded_vocab is not None:
        one.model.make_vocab_size_divisible_by = padded_vocab  # ceil(vocab / rows) * rows == rows
    set_model_only_layout(one, tensor_model_parallel_size=1)
    if dist.is_initialized() and dist.get_world_size() == 1:
        # A process that loads one model after another (conversion, prediction, tests) starts a fresh world each
        # time: megatron-core's groups of the last one are only released with their process group, and each
        # left behind keeps some 60 gloo threads polling (20 of them cost a quarter of a core while idle).
        shutdown_parallel()
    port = int(os.environ.get("MASTER_PORT") or find_free_port())
    initialize_parallel(one, DistEnv(0, 1, 0, "127.0.0.1", port, "single"))
    return one


def shutdown_parallel() -> None:
    if ps.model_parallel_is_initialized():
        ps.destroy_model_parallel()
    if dist.is_initialized():
        dist.destroy_process_group()
