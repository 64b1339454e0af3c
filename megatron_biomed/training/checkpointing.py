"""Checkpoints in megatron-core's dist_checkpointing (torch_dist) format.

Layout (Megatron-LM's): ``<dir>/iter_0000010/`` holds one checkpoint; ``<dir>/latest_checkpointed_iteration.txt``
names the newest complete one. A checkpoint is written under ``iter_XXXXXXX.tmp`` and renamed only after
every rank finished and dist_checkpointing wrote its ``metadata.json``, and the tracker file is replaced
atomically after that, so a crash mid-save never leaves a checkpoint that looks complete.

Because tensors are stored with their global shapes, a checkpoint loads into another TP/PP/DP layout.

Safety and integrity: every load reads the pickled parts (``.metadata``, non-tensor items) through restricted
unpicklers (``safe_load.restricted_loading``), so a checkpoint from elsewhere cannot run code. Every save writes
``manifest.json`` (sizes and checksums of all files, see ``manifest.py``) last inside the temporary directory,
fsyncs files and directories, and only then renames it and replaces the tracker. A load checks the manifest
first; a resume whose newest checkpoint fails the check falls back to the newest one that passes, and says so.
Checkpoints written before manifests existed (no ``checkpoint_format`` in their common state) load with a
warning that they are unverified.
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
from megatron_biomed.training import faults, manifest
from megatron_biomed.training.safe_load import UnsafeCheckpointError, install, restricted_loading

log = logging.getLogger(__name__)
# Every DCP read in this process goes through the restricted unpicklers from now on (see safe_load).
install()

TRACKER = "latest_checkpointed_iteration.txt"
# The run's configuration, written beside the dist-checkpoint files, so that a later fine-tune, evaluation
# or conversion needs only the checkpoint directory.
RUN_CONFIG = "run_config.yaml"
_ITER_RE = re.compile(r"^iter_(\d{7})$")
# Recorded in the common state; 2 = the save wrote manifest.json (so a missing manifest means damage).
CHECKPOINT_FORMAT = 2
# Test hook: SIGKILL this process at the named point of a save (see faults.py and tests/training).
KILL_IN_SAVE_ENV = faults.KILL_IN_SAVE_ENV
SAVE_KILL_POINTS = faults.SAVE_KILL_POINTS
_kill_point = faults.kill_point


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
    if not is_loading:
        sd["checkpoint_format"] = CHECKPOINT_FORMAT
    return sd


@dataclass
class PendingSave:
    """A save whose shards are being written: megatron-core's AsyncRequest, whose finalisation (after
    megatron-core's own: ``.metadata``, ``metadata.json``) checksums, writes the manifest, publishes the
    directory and replaces the tracker. Run it now (``save_checkpoint``) or in the background
    (``async_save.AsyncCheckpointer``)."""

    root: Path
    tmp: Path
    final: Path
    iteration: int
    request: object


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
) -> PendingSave:
    """Plan a save at ``state.iteration`` (a collective) and return it, its shards not yet written.

    What is saved is fixed here: megatron-core's writer (run now, or in a forked process that sees this
    moment's memory) writes these tensors whatever training does to them afterwards."""
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
    _kill_point("before_shards", state.iteration)
    try:
        request = dist_checkpointing.save(sd, str(tmp), async_sharded_save=True, async_strategy="mcore")
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # torch's CheckpointException is a BaseException
        raise CheckpointError(_save_failure(root, tmp, state.iteration, e)) from e
    rank = dist.get_rank() if dist.is_initialized() else 0
    iteration = state.iteration  # (state changes while an async save is in flight)
    request = faults.with_save_error(request, iteration, rank)
    request.add_finalize_fn(lambda: _publish(root, tmp, final, iteration, keep_last, run_config))
    return PendingSave(root, tmp, final, iteration, request)


def _publish(root: Path, tmp: Path, final: Path, iteration: int, keep_last: int, run_config) -> None:
    """Finalise a save once every rank's shards are written (a collective): each rank fsyncs and checksums
    the shards it wrote, rank 0 the shared files; rank 0 writes the manifest, renames the directory into
    place and replaces the tracker. A failure on rank 0 is raised on every rank."""
    _kill_point("after_shards", iteration)
    rank = dist.get_rank() if dist.is_initialized() else 0
    mine = manifest.describe(tmp, manifest.rank_files(tmp, rank))
    gathered = [None] * dist.get_world_size() if dist.is_initialized() else None
    if dist.is_initialized():
        dist.gather_object(mine, gathered if rank == 0 else None, dst=0)
    else:
        gathered = [mine]
    error = None
    if _rank0():
        try:
            _publish_on_rank0(root, tmp, final, iteration, keep_last, run_config, gathered)
        except (CheckpointError, OSError) as e:
            error = str(e) if isinstance(e, CheckpointError) else _save_failure(root, tmp, iteration, e)
    errors = _all_ranks_errors(error)
    if errors:
        raise CheckpointError(errors[0])


def _publish_on_rank0(root: Path, tmp: Path, final: Path, iteration: int, keep_last, run_config, gathered):
    if not is_complete(tmp):
        raise CheckpointError(f"dist_checkpointing did not finish {tmp}")
    if run_config is not None:
        import yaml

        (tmp / RUN_CONFIG).write_text(yaml.safe_dump(run_config, sort_keys=False))
    files: dict = {}
    for part in gathered:
        files.update(part)
    unclaimed = [p.name for p in tmp.glob("*.distcp") if p.name not in files]
    files.update(manifest.describe(tmp, unclaimed + manifest.shared_files(tmp)))
    manifest.write(tmp, files)
    _kill_point("before_rename", iteration)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    manifest.fsync_dir(root)
    _kill_point("before_tracker", iteration)
    tracker_tmp = root / (TRACKER + ".tmp")
    with open(tracker_tmp, "w") as f:
        f.write(f"{iteration}\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tracker_tmp, root / TRACKER)
    manifest.fsync_dir(root)
    if keep_last > 0:
        _prune(root, keep_last)


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
    """The message of a save that failed while writing its shards (see _save_failure)."""
    return _save_failure(pending.root, pending.tmp, pending.iteration, error)


def discard_failed_save(pending: PendingSave) -> None:
    """Remove what a failed save left (its temporary directory), to give back the space it took."""
    if _rank0():
        shutil.rmtree(pending.tmp, ignore_errors=True)
    _barrier()


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


def _save_failure(root: Path, tmp: Path, iteration: int, error: BaseException) -> str:
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


def _prune(root: Path, keep_last: int) -> None:
    done = sorted(int(m.group(1)) for p in root.iterdir() if (m := _ITER_RE.match(p.name)) and is_complete(p))
    for iteration in done[:-keep_last]:
        shutil.rmtree(iteration_dir(root, iteration), ignore_errors=True)


def checkpoint_path(root: str | Path, iteration: Optional[int] = None) -> Path:
    """The directory of the latest (or given) complete checkpoint under ``root``; ``root`` may also be an
    ``iter_XXXXXXX`` directory itself."""
    root = Path(root)
    if _ITER_RE.match(root.name) and is_complete(root):
        return root
    if iteration is None:
        iteration = latest_iteration(root)
        if iteration is None:
            raise CheckpointError(f"{root}: no checkpoint there (no {TRACKER} naming a complete iter_* directory)")
    path = iteration_dir(root, iteration)
    if not is_complete(path):
        raise CheckpointError(f"{path} is not a complete checkpoint")
    return path


def read_run_config(root: str | Path, iteration: Optional[int] = None) -> dict:
    """The experiment config a checkpoint was trained with (``run_config.yaml``), as a mapping."""
    import yaml

    path = checkpoint_path(root, iteration) / RUN_CONFIG
    if not path.is_file():
        raise CheckpointError(
            f"{path} is missing: this checkpoint does not record its config (saved before configs were recorded); "
            "give the model with --preset/--set instead"
        )
    return yaml.safe_load(path.read_text())


def _check_against_checkpoint(model_sd: dict, path: Path, new_prefixes: tuple[str, ...]) -> list[str]:
    """Compare this model's sharded tensors with what the checkpoint holds, before anything is loaded.

    Parameters under ``new_prefixes`` (a head the task adds) that the checkpoint lacks are dropped from
    ``model_sd`` and left at their fresh initialisation; their local names are returned. A body tensor the
    checkpoint lacks, or any shape mismatch, is a CheckpointError naming the tensor.
    """
    from megatron.core import dist_checkpointing
    from megatron.core.dist_checkpointing.mapping import ShardedTensor

    saved = dist_checkpointing.load_tensors_metadata(str(path))
    problems, dropped = [], []
    for name in list(model_sd):
        value = model_sd[name]
        if not isinstance(value, ShardedTensor):
            continue
        if value.key not in saved:
            if any(name.startswith(p) for p in new_prefixes):
                del model_sd[name]
                dropped.append(name)
            else:
                problems.append(f"tensor '{value.key}' is not in the checkpoint")
            continue
        want, got = tuple(value.global_shape), tuple(saved[value.key].global_shape)
        if want != got:
            problems.append(f"tensor '{value.key}': checkpoint has shape {got}, this model {want}")
    if problems:
        head = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise CheckpointError(
            f"{path} does not fit this model: {head}. Check that the model config (and any head: num_labels, "
            "num_choices) matches the checkpoint's run_config.yaml"
        )
    return dropped


def _all_ranks_errors(error: Optional[str]) -> list[str]:
    if not dist.is_initialized():
        return [error] if error else []
    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, error)
    return [e for e in out if e]


def verify_checkpoint(path: str | Path, checksums: bool = True) -> bool:
    """Check a checkpoint directory against its manifest (a collective when distributed: the files are
    split among the ranks). Returns True when verified, False for an old checkpoint without a manifest
    (a warning says it is unverified); raises CheckpointError naming the file that fails."""
    path = Path(path)
    error = None
    verified = False
    try:
        body = manifest.read(path)
        if body is None:
            with restricted_loading():
                from megatron.core import dist_checkpointing

                fmt = dist_checkpointing.load_common_state_dict(str(path)).get("checkpoint_format", 1)
            if fmt >= 2:
                error = (
                    f"{path / manifest.MANIFEST} is missing, but this checkpoint was saved with one: "
                    "it was damaged or tampered with after the save"
                )
        else:
            names = sorted(body["files"])
            world = dist.get_world_size() if dist.is_initialized() else 1
            rank = dist.get_rank() if dist.is_initialized() else 0
            manifest.verify(path, body, checksums=checksums, names=names[rank::world])
            verified = True
    except (manifest.ManifestError, CheckpointError) as e:
        error = str(e)
    except UnsafeCheckpointError:
        raise  # every rank reads the same file and refuses it
    except Exception as e:  # an unreadable file: name it
        error = f"{path}: cannot be read ({type(e).__name__}: {e})"
    errors = _all_ranks_errors(error)
    if errors:
        raise CheckpointError(errors[0])
    if not verified and _rank0():
        log.warning(
            "%s has no %s (saved before manifests were written): loading it unverified", path, manifest.MANIFEST
        )
    return verified


def _complete_iterations(root: Path) -> list[int]:
    return sorted(
        (int(m.group(1)) for p in root.iterdir() if (m := _ITER_RE.match(p.name)) and is_complete(p)), reverse=True
    )


def _resume_path(root: Path, newest: int, checksums: bool) -> Path:
    """The newest checkpoint at or below ``newest`` that verifies (saying so when it is not ``newest``)."""
    failures = []
    for iteration in [newest] + [i for i in _complete_iterations(root) if i < newest]:
        path = iteration_dir(root, iteration)
        try:
            verify_checkpoint(path, checksums)
        except CheckpointError as e:
            failures.append(str(e))
            if _rank0():
                log.warning("checkpoint %s fails verification: %s", path, e)
            continue
        if failures and _rank0():
            log.warning(
                "falling back to %s, the newest checkpoint that verifies (%d newer one(s) failed)", path, len(failures)
            )
        return path
    raise CheckpointError(f"{root}: no checkpoint verifies: " + "; ".join(failures))


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
    new_params: tuple[str, ...] = (),
    verify_checksums: bool = True,
) -> Optional[TrainState]:
    """Load the latest (or given) checkpoint of ``root`` into model (and optimizer, scheduler, RNG).

    Returns the TrainState to resume from, or None when ``root`` holds no checkpoint yet. With
    ``weights_only``, ``root`` may be an ``iter_*`` directory, and parameters whose names start with one of
    ``new_params`` may be absent from the checkpoint (they keep their fresh initialisation).

    The checkpoint is first checked against its manifest (sizes, and checksums unless ``verify_checksums`` is
    False); a resume from ``root`` without an ``iteration`` falls back to the newest checkpoint that verifies.
    Pickled parts are read by restricted unpicklers (see safe_load): a file asking for another class is refused.
    """
    root_path = Path(root)
    if weights_only and _ITER_RE.match(root_path.name):
        path = checkpoint_path(root_path)
        verify_checkpoint(path, verify_checksums)
    else:
        explicit = iteration is not None
        if iteration is None:
            iteration = latest_iteration(root)
            if iteration is None:
                if weights_only:
                    raise CheckpointError(f"{root}: no checkpoint there to initialise the weights from")
                return None
        path = iteration_dir(root, iteration)
        if not is_complete(path):
            raise CheckpointError(f"{path} is not a complete checkpoint")
        if explicit or weights_only:
            verify_checkpoint(path, verify_checksums)
        else:
            path = _resume_path(root_path, iteration, verify_checksums)
    with restricted_loading():
        return _load_verified(
            path, model, optimizer, scheduler, use_dist_opt, dist_opt_format, weights_only, new_params
        )


def _load_verified(path: Path, model, optimizer, scheduler, use_dist_opt, dist_opt_format, weights_only, new_params):
    from megatron.core import dist_checkpointing

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
    dropped: dict[str, list[str]] = {}
    if weights_only:
        for i in range(len(model)):
            key = _model_key(i, len(model))
            dropped[key] = _check_against_checkpoint(sd[key], path, new_params)
    loaded = dist_checkpointing.load(sd, str(path))
    for i, chunk in enumerate(model):
        key = _model_key(i, len(model))
        if dropped.get(key):
            result = _unwrap(chunk).load_state_dict(loaded[key], strict=False)
            unexpected = [k for k in result.missing_keys if k not in dropped[key] and not k.endswith("_extra_state")]
            if unexpected or result.unexpected_keys:
                raise CheckpointError(f"{path}: could not load {unexpected or result.unexpected_keys}")
        else:
            _unwrap(chunk).load_state_dict(loaded[key])
    if weights_only:
        fresh = sorted({n for names in dropped.values() for n in names})
        if fresh:
            log.info("%s: %d new parameter(s) keep their fresh initialisation: %s", path, len(fresh), fresh)
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
