"""The whole run's configuration: a tree of dataclasses (built by config/loading.py from a preset, YAML and
--set overrides)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from megatron_biomed.config.model import ModelConfig
from megatron_biomed.config.parallel import ParallelConfig
from megatron_biomed.config.task import TaskConfig
from megatron_biomed.config.training import (
    CheckpointConfig,
    DataConfig,
    LoggingConfig,
    OptimizerConfig,
    TrainingConfig,
)
from megatron_biomed.errors import BiomedError


class ConfigError(BiomedError, ValueError):
    """A configuration value is missing, unknown or of the wrong type."""


@dataclass
class ExperimentConfig:
    name: str = "experiment"
    model: ModelConfig = field(default_factory=ModelConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    train: TrainingConfig = field(default_factory=TrainingConfig)
    data: DataConfig = field(default_factory=DataConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    task: TaskConfig = field(default_factory=TaskConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

