"""Helpers for tests that start real training processes (torchrun with gloo ranks, or one process)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from torch.distributed import TCPStore

from megatron_biomed.parallel.env import find_free_port as free_port

ROOT = Path(__file__).resolve().parents[1]
PRETRAIN = ROOT / "tools" / "pretrain.py"
FINETUNE = ROOT / "tools" / "finetune.py"
SHARED_DATA = ROOT.parent / "shared" / "data"

# The environment of every process a test starts (on top of the caller's). TORCHDYNAMO_DISABLE: megatron-core
# wraps its fused functions in torch.compile when it is imported (megatron/core/jit.py, @jit_fuser), and with this
# torch the wrapping alone imports TorchInductor: about 1.5 s of CPU per process, some 25% of a tiny training
# run. Our models turn those fusions off (models/common.py: bias_activation_fusion=False, ...), so no compiled
# function ever runs: tiny-biomedlm, tiny-llama and tiny-mamba runs compile no frame and log the same losses
# bit for bit with and without it. Only children get it: tests/kernels/ compiles in the pytest process itself.
CHILD_ENV = {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "TORCHDYNAMO_DISABLE": "1"}


def reap(pid: int, workdir: Path) -> None:
    """Kill what a run left behind: its process group, and processes started in its working directory
    (torchrun's workers run in sessions of their own, and so do the helpers they spawn)."""
    import psutil

    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    workdir = workdir.resolve()
    for p in psutil.process_iter(["pid", "cwd"]):
        try:
            if p.info["cwd"] and Path(p.info["cwd"]) == workdir and p.pid != os.getpid():
                p.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass


def run_pretrain(
    nproc: int,
    overrides: list[str],
    workdir: Path,
    preset: str = "tiny-biomedlm",
    timeout: int = 600,
    check: bool = True,
    env_extra: dict | None = None,
    torchrun_args: list[str] = (),
) -> subprocess.CompletedProcess:
    """Run tools/pretrain.py on ``nproc`` CPU ranks (see run_tool: under torchrun only with ``torchrun_args``
    such as ``--max-restarts 1``) and return the finished process."""
    args = ["--preset", preset]
    for o in overrides:
        args += ["--set", o]
    return run_tool(
        PRETRAIN, nproc, args, workdir, timeout=timeout, check=check, env_extra=env_extra, torchrun_args=torchrun_args
    )


def run_finetune(
    nproc: int, args: list[str], overrides: list[str], workdir: Path, timeout: int = 600, check: bool = True
) -> subprocess.CompletedProcess:
    """Run tools/finetune.py with ``args`` and ``--set`` overrides on ``nproc`` CPU ranks."""
    full = list(args)
    for o in overrides:
        full += ["--set", o]
    return run_tool(FINETUNE, nproc, full, workdir, timeout=timeout, check=check)


def run_tool(
    script: Path,
    nproc: int,
    args: list[str],
    workdir: Path,
    timeout: int = 600,
    check: bool = True,
    env_extra: dict | None = None,
    torchrun_args: list[str] = (),
    torchrun: bool = False,
) -> subprocess.CompletedProcess:
    """Run a tools/ entry point on ``nproc`` CPU ranks.

    With nproc > 1 the ranks are started here, each with the variables torchrun gives its workers (RANK,
    LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR, MASTER_PORT, TORCHELASTIC_USE_AGENT_STORE,
    with the store served from this process as torchrun's agent serves it), their output in one stream as
    torchrun's, and all of them stopped when one fails, the run then exiting 1 as torchrun does. torchrun
    itself only starts them where a test is about it (``torchrun=True``, or ``torchrun_args`` such as
    ``--max-restarts 1``): its agent is one more interpreter that imports torch before any rank starts."""
    use_torchrun = nproc > 1 and (torchrun or bool(torchrun_args))
    if use_torchrun:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            str(nproc),
            "--master-addr",
            "127.0.0.1",
            "--master-port",
            str(free_port()),
            *torchrun_args,
            str(script),
            *args,
        ]
    else:
        cmd = [sys.executable, str(script), *args]
    env = dict(os.environ, **CHILD_ENV)
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    store = None
    if nproc == 1:  # a single process still opens a TCP store: not on a port another run may hold
        env["MASTER_PORT"] = str(free_port())
    elif not use_torchrun:
        # As torchrun's agent: the store is served from here, on a port bound now (no other run can take it
        # while the ranks import), and every rank connects to it as a client.
        store = TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
        env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(store.port), TORCHELASTIC_USE_AGENT_STORE="True")
    env.update(env_extra or {})
    if store is None:
        rank_envs = [env]
    else:
        world = {"WORLD_SIZE": str(nproc), "LOCAL_WORLD_SIZE": str(nproc), "GROUP_RANK": "0"}
        rank_envs = [dict(env, RANK=str(r), LOCAL_RANK=str(r), **world) for r in range(nproc)]
    # Output goes to files, not pipes: a killed run can leave helper processes (dist_checkpointing's
    # multiprocessing manager) holding inherited pipes open. Its own session lets us reap them all.
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        children = [
            subprocess.Popen(cmd, cwd=workdir, env=e, stdout=out, stderr=err, text=True, start_new_session=True)
            for e in rank_envs
        ]
        try:
            returncode = _wait_all(children, timeout)
        finally:
            for child in children:
                reap(child.pid, Path(workdir))
            del store
        out.seek(0)
        err.seek(0)
        proc = subprocess.CompletedProcess(cmd, returncode, out.read(), err.read())
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} on {nproc} rank(s) failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
            f"{proc.stderr[-6000:]}"
        )
    return proc


def _wait_all(children: list[subprocess.Popen], timeout: float) -> int:
    """The exit status of one process; of several ranks, 0 when all succeed, else 1 as soon as one fails (the
    others, which may be waiting for it in a collective, are then reaped by the caller)."""
    if len(children) == 1:
        return children[0].wait(timeout=timeout)
    deadline = time.monotonic() + timeout
    while True:
        codes = [child.poll() for child in children]
        if any(code not in (None, 0) for code in codes):
            return 1
        if all(code == 0 for code in codes):
            return 0
        if time.monotonic() > deadline:
            raise subprocess.TimeoutExpired(children[0].args, timeout)
        time.sleep(0.05)


def read_metrics(path: Path, kind: str = "train") -> dict[int, dict]:
    """iteration -> metrics row from a logging.metrics_file (the last row wins for repeated iterations)."""
    rows = {}
    for line in Path(path).read_text().splitlines():
        row = json.loads(line)
        if row["kind"] == kind:
            rows[row["iteration"]] = row
    return rows


# fp32, no dropout, megatron-core's MockGPTDataset with a fixed seed: runs are deterministic.
BASE = [
    "data.mock=true",
    "train.train_iters=20",
    "train.global_batch_size=8",
    "train.micro_batch_size=2",
    "train.eval_iters=0",
    "train.precision=fp32",
    "optimizer.name=decoupled_adamw",
    "optimizer.lr=1e-3",
    "optimizer.weight_decay=1.6e-5",
    "optimizer.lr_warmup_iters=2",
]


def assert_losses_close(got: dict, want: dict, steps, rtol: float) -> None:
    for it in steps:
        a, b = got[it]["loss"], want[it]["loss"]
        assert abs(a - b) <= rtol * abs(b), (
            f"iteration {it}: loss {a!r} vs reference {b!r} (rel {abs(a - b) / abs(b):.2e})"
        )


def train_until_killed(nproc: int, extra: list[str], initial_weights: Path, work: Path, keep_last: int = 0) -> None:
    """Train from ``initial_weights`` saving every 5 iterations to ``work/ck``, killed (SIGKILL, no clean-up)
    at iteration 13: the checkpoint at 10 is the newest."""
    from megatron_biomed.checkpoint import latest_iteration  # megatron-core: heavy, and only needed here

    proc = run_pretrain(
        nproc,
        BASE
        + extra
        + [
            f"checkpoint.init_from={initial_weights}",
            f"checkpoint.save={work / 'ck'}",
            "checkpoint.save_interval=5",
            f"checkpoint.keep_last={keep_last}",
            "train.inject_kill_at=13",
            f"logging.metrics_file={work / 'a.jsonl'}",
        ],
        work,
        check=False,
    )
    assert proc.returncode != 0  # killed: -9 for one process, torchrun reports the failed ranks
    assert max(read_metrics(work / "a.jsonl")) == 12
    assert latest_iteration(work / "ck") == 10


def resume_training(nproc: int, extra: list[str], work: Path) -> dict[int, dict]:
    """Resume what train_until_killed left in ``work/ck`` up to iteration 20 (saved there): its metrics."""
    proc = run_pretrain(
        nproc,
        BASE
        + extra
        + [
            f"checkpoint.load={work / 'ck'}",
            f"checkpoint.save={work / 'ck'}",
            f"logging.metrics_file={work / 'b.jsonl'}",
        ],
        work,
    )
    assert "resumed from" in proc.stdout and "at iteration 10 (consumed samples 80)" in proc.stdout
    return read_metrics(work / "b.jsonl")
