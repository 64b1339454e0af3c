"""Saving a checkpoint and publishing it: the one path by which every checkpoint of ours is written.

A save writes under ``iter_XXXXXXX.tmp`` (layout.py) with megatron-core's dist_checkpointing (torch_dist
format), which writes ``metadata.json`` after every rank's shards. Then, once every rank is done, the
publication (``publish``): each rank fsyncs and checksums the shards it wrote, rank 0 the shared files; rank 0
writes ``run_config.yaml`` and, last, ``manifest.json`` (manifest.py), renames the directory to ``iter_XXXXXXX``,
replaces the tracker atomically and prunes old checkpoints. A crash at any moment before the rename leaves
only a ``.tmp`` directory, and before the tracker is replaced the tracker still names the previous checkpoint,
so a crash mid-save never leaves a checkpoint that looks complete.

Training saves with ``start_save`` (the shards then written now by ``finish_save``, or in the background by
async_save.py); the streaming Hugging Face importer with ``save_weights`` (its own sharded strategy writing in
this one process). Both publish the same way. Fault points for the failure tests: faults.py.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from megatron.core import dist_checkpointing

from megatron_biomed.checkpoint import faults, manifest
from megatron_biomed.checkpoint.layout import (
    CheckpointError,
    is_complete,
    iteration_dir,
    latest_iteration,
    prune,
    write_tracker,
)
from megatron_biomed.checkpoint.ranks import all_ranks_errors, barrier, gather_to_rank0, is_rank0, rank
from megatron_biomed.checkpoint.run_config import write_run_config
from megatron_biomed.checkpoint.state import NoOptimizer, TrainState, sharded_state


@dataclass
class PendingSave:
    """A save whose shards are being written: megatron-core's AsyncRequest, whose finalisation (after
    megatron-core's own: ``.metadata``, ``metadata.json``) checksums, writes the manifest, publishes the
    directory and replaces the tracker. Run it now (``finish_save``) or in the background
    (``async_save.AsyncCheckpointer``)."""

    root: Path
    tmp: Path
    final: Path
    iteration: int
    request: object


def _begin(root: Path, iteration: int) -> tuple[Path, Path]:
    """(temporary, final) directory of the save of ``iteration``: rank 0 makes the temporary one afresh,
    every rank waits for it (a collective)."""
    final = iteration_dir(root, iteration)
    tmp = final.with_name(final.name + ".tmp")
    if is_rank0():
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)  # left by an earlier crash mid-save
        tmp.mkdir()
    barrier()
    return tmp, final


def start_save(
    root: str | Path,
    model,
    optimizer,
    scheduler,
    state: TrainState,
    *,
    use_dist_opt: bool,
    dist_opt_format: str = "fully_reshardable",
    keep_last: int = 0,
    run_config: Optional[dict] = None,
    extra_models: Optional[dict] = None,
) -> PendingSave:
    """Plan a save at ``state.iteration`` (a collective) and return it, its shards not yet written.

    What is saved is fixed here: megatron-core's writer (run now, or in a forked process that sees this
    moment's memory) writes these tensors whatever training does to them afterwards."""
    root = Path(root)
    tmp, final = _begin(root, state.iteration)
    sd = sharded_state(
        model,
        optimizer,
        scheduler,
        state,
        use_dist_opt,
        dist_opt_format,
        is_loading=False,
        with_optimizer=True,
        with_rng=True,
        extra_models=extra_models,
    )
    faults.kill_point("before_shards", state.iteration)
    try:
        request = dist_checkpointing.save(sd, str(tmp), async_sharded_save=True, async_strategy="mcore")
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # torch's CheckpointException is a BaseException
        raise CheckpointError(save_failure_message(root, tmp, state.iteration, e)) from e
    iteration = state.iteration  # (state changes while an async save is in flight)
    request = faults.with_save_error(request, iteration, rank())
    request.add_finalize_fn(lambda: publish(root, tmp, final, iteration, keep_last, run_config))
    return PendingSave(root, tmp, final, iteration, request)


def save_weights(root: str | Path, model, *, sharded_strategy, run_config: Optional[dict] = None) -> Path:
    """Write ``model`` (one chunk, in this one process) as iteration 0 of a weights-only checkpoint under
    ``root`` with ``sharded_strategy`` (a megatron-core save strategy that writes synchronously, e.g.
    convert/dist_writer.py's streaming one), and publish it like every save. The sharded state is a training
    save's (model, empty optimizer and scheduler, train state, RNG, layout), so the checkpoint reads like one.
    Returns the iteration directory."""
    root = Path(root)
    state = TrainState()
    tmp, final = _begin(root, state.iteration)
    sd = sharded_state([model], NoOptimizer(), NoOptimizer(), state, False, "fully_reshardable",
                       is_loading=False, with_optimizer=True, with_rng=True)  # fmt: skip
    faults.kill_point("before_shards", state.iteration)
    dist_checkpointing.save(sd, str(tmp), sharded_strategy=sharded_strategy)
    publish(root, tmp, final, state.iteration, keep_last=0, run_config=run_config)
    return final


def publish(root: Path, tmp: Path, final: Path, iteration: int, keep_last: int, run_config) -> None:
    """Finalise a save once every rank's shards are written (a collective): each rank fsyncs and checksums
    the shards it wrote, rank 0 the shared files; rank 0 writes the manifest, renames the directory into
    place and replaces the tracker. A failure on rank 0 is raised on every rank."""
    faults.kill_point("after_shards", iteration)
    mine = manifest.describe(tmp, manifest.rank_files(tmp, rank()))
    gathered = gather_to_rank0(mine)
    error = None
    if is_rank0():
        try:
            _publish_on_rank0(root, tmp, final, iteration, keep_last, run_config, gathered)
        except (CheckpointError, OSError) as e:
            error = str(e) if isinstance(e, CheckpointError) else save_failure_message(root, tmp, iteration, e)
    errors = all_ranks_errors(error)
    if errors:
        raise CheckpointError(errors[0])


def _publish_on_rank0(root: Path, tmp: Path, final: Path, iteration: int, keep_last, run_config, gathered):
    if not is_complete(tmp):
        raise CheckpointError(f"dist_checkpointing did not finish {tmp}")
    if run_config is not None:
        write_run_config(tmp, run_config)
    files: dict = {}
    for part in gathered:
        files.update(part)
    unclaimed = [p.name for p in tmp.glob("*.distcp") if p.name not in files]
    files.update(manifest.describe(tmp, unclaimed + manifest.shared_files(tmp)))
    manifest.write(tmp, files)
    faults.kill_point("before_rename", iteration)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    manifest.fsync_dir(root)
    faults.kill_point("before_tracker", iteration)
    write_tracker(root, iteration)
    if keep_last > 0:
        prune(root, keep_last)


def finish_save(pending: PendingSave) -> Path:
    """Write a planned save's shards now and finalise it (a collective). Returns the final directory."""
    try:
        pending.request.execute_sync()
    except CheckpointError:
        raise
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:
        raise CheckpointError(save_failure(pending, e)) from e
    return pending.final


def save_failure(pending: PendingSave, error: BaseException) -> str:
    """The message of a save that failed while writing its shards (see save_failure_message)."""
    return save_failure_message(pending.root, pending.tmp, pending.iteration, error)


def discard_failed_save(pending: PendingSave) -> None:
    """Remove what a failed save left (its temporary directory), to give back the space it took."""
    if is_rank0():
        shutil.rmtree(pending.tmp, ignore_errors=True)
    barrier()


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
    run_config: Optional[dict] = None,
) -> Path:
    """Save at ``state.iteration`` (a collective: every rank calls it). Returns the final directory.

    ``run_config`` (the experiment config as a dict) is written as ``run_config.yaml`` inside the checkpoint."""
    pending = start_save(
        root, model, optimizer, scheduler, state, use_dist_opt=use_dist_opt, dist_opt_format=dist_opt_format,
        keep_last=keep_last, run_config=run_config,
    )  # fmt: skip
    return finish_save(pending)


def save_failure_message(root: Path, tmp: Path, iteration: int, error: BaseException) -> str:
    """What a failed write says: the cause (an OS error when one is in the chain), the free space, and that
    the previous checkpoint is still the newest complete one."""
    reason = None
    # Breadth-first through causes, contexts and torch's per-rank failures (CheckpointException.failures).
    todo: list = [error]
    seen: set = set()
    while todo and reason is None:
        e = todo.pop(0)
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno:
            reason = f"{type(e).__name__}: {e}"
            break
        todo += [e.__cause__, e.__context__]
        todo += [exc for exc, _trace in getattr(e, "failures", {}).values()]
    e = error
    while e is not None and reason is None:
        m = re.search(r"\[Errno \d+\][^\n'\"]*", str(e))
        reason = m.group(0) if m else None
        e = e.__cause__ or e.__context__
    if reason is None:  # the exception's own line (a traceback's last), e.g. megatron-core's "Worker failure: ..."
        lines = [line for line in str(error).splitlines() if line.strip()] or [type(error).__name__]
        reason = next((line for line in reversed(lines) if "Error" in line and not line.startswith(" ")), lines[-1])
    try:
        free = f"{shutil.disk_usage(root).free / 2**20:.1f} MiB free on that filesystem"
    except OSError:
        free = "free space unknown"
    try:
        previous = latest_iteration(root)
    except CheckpointError:
        previous = None
    kept = (
        f"the previous checkpoint {iteration_dir(root, previous)} stays the newest complete one"
        if previous is not None
        else "there is no earlier complete checkpoint"
    )
    return (
        f"saving iteration {iteration} to {tmp} failed ({reason}; {free}); {kept}. Free space or set "
        "checkpoint.save to another directory, then resume with checkpoint.load"
    )
