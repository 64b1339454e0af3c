"""Loading a checkpoint, after checking it: a resume (model, optimizer, scheduler, RNG, train state) or weights
only (``checkpoint.init_from``, evaluation, generation, conversion), into any TP / PP / DP layout.

A load checks the checkpoint against its manifest first (sizes, and checksums unless skipped); a resume whose
newest checkpoint fails the check falls back to the newest one that passes, and says so. Checkpoints written
before manifests existed (no ``checkpoint_format`` in their common state) load with a warning that they are
unverified. Every pickled part is read through the restricted unpicklers of safe_load.py, so a checkpoint
from elsewhere cannot run code.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from megatron.core import dist_checkpointing
from megatron.core.dist_checkpointing.mapping import ShardedTensor

from megatron_biomed.checkpoint import manifest
from megatron_biomed.checkpoint.layout import (
    ITER_RE,
    CheckpointError,
    checkpoint_path,
    complete_iterations,
    is_complete,
    iteration_dir,
    latest_iteration,
)
from megatron_biomed.checkpoint.ranks import all_ranks_errors, is_rank0, rank, world_size
from megatron_biomed.checkpoint.safe_load import UnsafeCheckpointError, restricted_loading
from megatron_biomed.checkpoint.state import (
    TrainState,
    extra_key,
    model_key,
    parallel_layout,
    restore_rng,
    sharded_state,
    unwrap,
)
from megatron_biomed.parallel import cpu

log = logging.getLogger(__name__)


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
                fmt = dist_checkpointing.load_common_state_dict(str(path)).get("checkpoint_format", 1)
            if fmt >= 2:
                error = (
                    f"{path / manifest.MANIFEST} is missing, but this checkpoint was saved with one: "
                    "it was damaged or tampered with after the save"
                )
        else:
            manifest.check_listed(path, body)
            names = sorted(body["files"])
            manifest.verify(path, body, checksums=checksums, names=names[rank() :: world_size()])
            verified = True
    except (manifest.ManifestError, CheckpointError) as e:
        error = str(e)
    except UnsafeCheckpointError:
        raise  # every rank reads the same file and refuses it
    except Exception as e:  # an unreadable file: name it
        error = f"{path}: cannot be read ({type(e).__name__}: {e})"
    errors = all_ranks_errors(error)
    if errors:
        raise CheckpointError(errors[0])
    if not verified and is_rank0():
        log.warning(
            "%s has no %s (saved before manifests were written): loading it unverified", path, manifest.MANIFEST
        )
    return verified


def _resume_path(root: Path, newest: int, checksums: bool) -> Path:
    """The newest checkpoint at or below ``newest`` that verifies (saying so when it is not ``newest``)."""
    failures = []
    for iteration in [newest] + [i for i in complete_iterations(root) if i < newest]:
        path = iteration_dir(root, iteration)
        try:
            verify_checkpoint(path, checksums)
        except CheckpointError as e:
            failures.append(str(e))
            if is_rank0():
                log.warning("checkpoint %s fails verification: %s", path, e)
            continue
        if failures and is_rank0():
            log.warning(
                "falling back to %s, the newest checkpoint that verifies (%d newer one(s) failed)", path, len(failures)
            )
        return path
    raise CheckpointError(f"{root}: no checkpoint verifies: " + "; ".join(failures))


def _check_against_checkpoint(model_sd: dict, path: Path, new_prefixes: tuple[str, ...]) -> list[str]:
    """Compare this model's sharded tensors with what the checkpoint holds, before anything is loaded.

    Parameters under ``new_prefixes`` (a head the task adds) are dropped from ``model_sd`` and left at their
    fresh initialisation, whether the checkpoint holds them or not; their local names are returned. Any other
    tensor the checkpoint lacks, or any shape mismatch, is a CheckpointError naming the tensor.
    """
    saved = dist_checkpointing.load_tensors_metadata(str(path))
    problems, dropped = [], []
    for name in list(model_sd):
        value = model_sd[name]
        if not isinstance(value, ShardedTensor):
            continue
        if any(name.startswith(p) for p in new_prefixes):
            del model_sd[name]
            dropped.append(name)
            continue
        if value.key not in saved:
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
    extra_models: Optional[dict] = None,
    weights_from: str = "model",
) -> Optional[TrainState]:
    """Load the latest (or given) checkpoint of ``root`` into model (and optimizer, scheduler, RNG).

    Returns the TrainState to resume from, or None when ``root`` holds no checkpoint yet. With
    ``weights_only``, ``root`` may be an ``iter_*`` directory, and parameters whose names start with one of
    ``new_params`` are not loaded: they keep their fresh initialisation whether the checkpoint holds them or
    not (a head started fresh on a fine-tuned body; pass none to load such a head too).

    The checkpoint is first checked against its manifest (sizes, and checksums unless ``verify_checksums`` is
    False); a resume from ``root`` without an ``iteration`` falls back to the newest checkpoint that verifies.
    Pickled parts are read by restricted unpicklers (see safe_load): a file asking for another class is refused.
    ``extra_models`` (a resume): name -> chunks of other weights the checkpoint holds (training/ema.py's average),
    restored too; ``weights_from`` (weights only): load the model from such saved weights (e.g. "ema") instead.
    """
    root_path = Path(root)
    if weights_only and ITER_RE.match(root_path.name):
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
            path, model, optimizer, scheduler, use_dist_opt, dist_opt_format, weights_only, new_params,
            {} if weights_only else dict(extra_models or {}), weights_from,
        )  # fmt: skip


def _load_verified(
    path: Path, model, optimizer, scheduler, use_dist_opt, dist_opt_format, weights_only, new_params, extra,
    weights_from,
):  # fmt: skip
    common = dist_checkpointing.load_common_state_dict(str(path))
    saved_extra = common.get("extra_models", [])
    wanted = list(extra) + ([weights_from] if weights_from != "model" else [])
    missing = [name for name in wanted if name not in saved_extra]
    if missing:
        raise CheckpointError(
            f"{path} holds no {' or '.join(repr(n) for n in missing)} weights (it has: "
            f"{', '.join(['model', *saved_extra])}); for 'ema': it was saved without optimizer.ema_decay -- resume "
            "it with optimizer.ema_decay=0, or start a new run from its weights with checkpoint.init_from"
        )
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
    same_layout = common.get("layout") == parallel_layout()
    sd = sharded_state(
        model,
        optimizer,
        scheduler,
        None if weights_only else TrainState(),
        use_dist_opt,
        dist_opt_format,
        is_loading=True,
        with_optimizer=with_opt,
        with_rng=same_layout and not weights_only,
        extra_models=extra,
        weights_from=weights_from,
    )
    dropped: dict[str, list[str]] = {}
    if weights_only:
        for i in range(len(model)):
            key = model_key(i, len(model))
            dropped[key] = _check_against_checkpoint(sd[key], path, new_params)
    loaded = dist_checkpointing.load(sd, str(path))
    for i, chunk in enumerate(model):
        key = model_key(i, len(model))
        if dropped.get(key):
            result = unwrap(chunk).load_state_dict(loaded[key], strict=False)
            unexpected = [k for k in result.missing_keys if k not in dropped[key] and not k.endswith("_extra_state")]
            if unexpected or result.unexpected_keys:
                raise CheckpointError(f"{path}: could not load {unexpected or result.unexpected_keys}")
        else:
            unwrap(chunk).load_state_dict(loaded[key])
    for name, chunks in extra.items():
        for i, chunk in enumerate(chunks):
            unwrap(chunk).load_state_dict(loaded[extra_key(name, i, len(chunks))])
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
        restore_rng(loaded["rng_state"])
    elif not same_layout:
        log.info(
            "checkpoint layout %s differs from this run's %s: RNG states not restored",
            common.get("layout"),
            parallel_layout(),
        )
    ts = loaded["train_state"]
    return TrainState(
        iteration=ts["iteration"], consumed_samples=ts["consumed_samples"], skipped_nonfinite=ts["skipped_nonfinite"]
    )
