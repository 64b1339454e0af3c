"""Where this process sits in the job: read from torchrun's or SLURM's environment variables."""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from typing import Mapping, Optional

from megatron_biomed.errors import BiomedError


class LaunchEnvError(BiomedError, RuntimeError):
    """The launcher's environment is incomplete or inconsistent."""


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int
    launcher: str  # "torchrun", "slurm" or "single"
    # Ranks on this node (torchrun's LOCAL_WORLD_SIZE, SLURM's tasks per node); None where the launcher does not say.
    local_world_size: Optional[int] = None


def find_free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (for one-process groups)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def first_slurm_host(nodelist: str) -> str:
    """First host name of a SLURM node list such as ``gpu[003-005,010],login1`` -> ``gpu003``."""
    nodelist = nodelist.strip()
    if not nodelist:
        raise LaunchEnvError("SLURM_NODELIST is empty")
    m = re.match(r"^([^,\[]+)(\[([^\]]+)\])?", nodelist)
    if not m:
        raise LaunchEnvError(f"cannot parse SLURM_NODELIST={nodelist!r}")
    prefix, _, ranges = m.groups()
    if ranges is None:
        return prefix
    first = ranges.split(",")[0].split("-")[0]
    return prefix + first


def _int(env: Mapping[str, str], name: str) -> int:
    value = env.get(name)
    if value is None:
        raise LaunchEnvError(f"environment variable {name} is not set")
    try:
        return int(value)
    except ValueError as e:
        raise LaunchEnvError(f"environment variable {name}={value!r} is not an integer") from e


def slurm_tasks_on_this_node(env: Mapping[str, str]) -> Optional[int]:
    """SLURM's task count on this node: SLURM_NTASKS_PER_NODE, else this node's entry of SLURM_TASKS_PER_NODE
    (``"4(x2),3"``: nodes listed in order, SLURM_NODEID picks one); None if neither says."""
    if env.get("SLURM_NTASKS_PER_NODE", "").isdigit():
        return int(env["SLURM_NTASKS_PER_NODE"])
    spec = env.get("SLURM_TASKS_PER_NODE")
    if not spec:
        return None
    counts: list[int] = []
    for part in spec.split(","):
        m = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", part.strip())
        if not m:
            return None
        counts += [int(m.group(1))] * int(m.group(2) or 1)
    node = int(env.get("SLURM_NODEID", "0") or 0)
    return counts[node] if 0 <= node < len(counts) else None


def read_dist_env(env: Optional[Mapping[str, str]] = None, default_port: int = 29500) -> DistEnv:
    """torchrun (RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT) first, then SLURM, else one process."""
    env = os.environ if env is None else env
    if "RANK" in env and "WORLD_SIZE" in env:
        d = DistEnv(
            rank=_int(env, "RANK"),
            world_size=_int(env, "WORLD_SIZE"),
            local_rank=int(env.get("LOCAL_RANK", "0")),
            master_addr=env.get("MASTER_ADDR", "127.0.0.1"),
            master_port=int(env.get("MASTER_PORT", default_port)),
            launcher="torchrun",
            local_world_size=_int(env, "LOCAL_WORLD_SIZE") if "LOCAL_WORLD_SIZE" in env else None,
        )
    elif "SLURM_PROCID" in env and "SLURM_NTASKS" in env:
        nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
        if env.get("MASTER_ADDR"):
            addr = env["MASTER_ADDR"]
        elif nodelist:
            addr = first_slurm_host(nodelist)
        else:
            raise LaunchEnvError("SLURM job without SLURM_NODELIST or MASTER_ADDR: cannot find the rendezvous host")
        port = int(env.get("MASTER_PORT", 10000 + int(env.get("SLURM_JOB_ID", "0")) % 20000))
        d = DistEnv(
            rank=_int(env, "SLURM_PROCID"),
            world_size=_int(env, "SLURM_NTASKS"),
            local_rank=int(env.get("SLURM_LOCALID", "0")),
            master_addr=addr,
            master_port=port,
            launcher="slurm",
            local_world_size=slurm_tasks_on_this_node(env),
        )
    else:
        # One process: its own process group on this host, on MASTER_PORT if set, else any free port (so that
        # several one-process runs on a machine never meet at the same rendezvous).
        port = int(env["MASTER_PORT"]) if env.get("MASTER_PORT") else find_free_port()
        d = DistEnv(0, 1, 0, env.get("MASTER_ADDR", "127.0.0.1"), port, "single", local_world_size=1)
    if not 0 <= d.rank < d.world_size:
        raise LaunchEnvError(f"rank {d.rank} is outside world size {d.world_size} ({d.launcher} environment)")
    return d
