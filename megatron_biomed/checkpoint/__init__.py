"""Checkpoints in megatron-core's dist_checkpointing (torch_dist) format: save, publish, verify, load safely.

Tensors are stored with their global shapes, so a checkpoint loads into another TP / PP / DP layout.

* :mod:`layout` -- ``iter_XXXXXXX`` directories, the tracker naming the newest complete one, ``CheckpointError``.
* :mod:`state` -- what a checkpoint holds (the sharded state dict of a save or a load), ``TrainState``.
* :mod:`publish` -- the one save-and-publish path (temporary directory, ``run_config.yaml``, manifest last,
  fsync, rename, tracker, pruning), for training's saves and the streaming Hugging Face importer.
* :mod:`async_save` -- saves written in the background while training goes on.
* :mod:`load` -- verify a checkpoint against its manifest, then load it (a resume or weights only).
* :mod:`manifest` -- every file's size and checksum, written last, checked on load.
* :mod:`safe_load` -- restricted unpicklers: loading never runs code from a checkpoint.
* :mod:`run_config` -- the run's configuration recorded in a checkpoint, read back as an ExperimentConfig.
* :mod:`ranks` -- which rank does what in a checkpoint collective.
* :mod:`faults` -- fault points inside a save, for the failure tests.

Importing this package restricts every torch.distributed.checkpoint read of the process (``safe_load.install``),
so code of ours that reads a checkpoint's files directly (conversion, inference) is covered too.
"""

from megatron_biomed.checkpoint.async_save import AsyncCheckpointer
from megatron_biomed.checkpoint.layout import (
    TRACKER,
    CheckpointError,
    checkpoint_path,
    is_complete,
    iteration_dir,
    latest_iteration,
)
from megatron_biomed.checkpoint.load import load_checkpoint, verify_checkpoint
from megatron_biomed.checkpoint.manifest import ManifestError
from megatron_biomed.checkpoint.publish import (
    PendingSave,
    discard_failed_save,
    finish_save,
    save_checkpoint,
    save_weights,
    start_save,
)
from megatron_biomed.checkpoint.run_config import RUN_CONFIG, read_run_config, run_experiment_config
from megatron_biomed.checkpoint.safe_load import UnsafeCheckpointError, install, restricted_loading
from megatron_biomed.checkpoint.state import TrainState

install()

__all__ = [
    "RUN_CONFIG",
    "TRACKER",
    "AsyncCheckpointer",
    "CheckpointError",
    "ManifestError",
    "PendingSave",
    "TrainState",
    "UnsafeCheckpointError",
    "checkpoint_path",
    "discard_failed_save",
    "finish_save",
    "install",
    "is_complete",
    "iteration_dir",
    "latest_iteration",
    "load_checkpoint",
    "read_run_config",
    "restricted_loading",
    "run_experiment_config",
    "save_checkpoint",
    "save_weights",
    "start_save",
    "verify_checkpoint",
]
