"""The run's configuration recorded in a checkpoint (``run_config.yaml`` beside the dist-checkpoint files), so
that a later fine-tune, evaluation, generation or conversion needs only the checkpoint directory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import yaml

from megatron_biomed.checkpoint.layout import CheckpointError, checkpoint_path
from megatron_biomed.config.experiment import ExperimentConfig
from megatron_biomed.config.loading import apply_mapping

RUN_CONFIG = "run_config.yaml"


def write_run_config(directory: Path, run_config: dict) -> Path:
    """Write ``run_config`` (the experiment config as a mapping) into a checkpoint directory being saved."""
    path = directory / RUN_CONFIG
    path.write_text(yaml.safe_dump(run_config, sort_keys=False))
    return path


def read_run_config(root: str | Path, iteration: Optional[int] = None) -> dict:
    """The experiment config a checkpoint was trained with (``run_config.yaml``), as a mapping."""
    path = checkpoint_path(root, iteration) / RUN_CONFIG
    if not path.is_file():
        raise CheckpointError(
            f"{path} is missing: this checkpoint does not record its config (saved before configs were recorded); "
            "give the model with --preset/--set instead"
        )
    return yaml.safe_load(path.read_text())


def run_experiment_config(checkpoint: str | os.PathLike) -> tuple[Path, ExperimentConfig]:
    """The complete checkpoint directory under ``checkpoint`` and the ExperimentConfig it recorded."""
    path = checkpoint_path(checkpoint)
    cfg = apply_mapping(ExperimentConfig(), read_run_config(path), source=str(path / RUN_CONFIG))
    return path, cfg
