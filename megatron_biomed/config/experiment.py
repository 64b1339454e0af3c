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


class ConfigError(ValueError):
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


# load_config and the override helpers live in config/loading.py (which imports this module and the
# presets; nothing here imports them back). Old imports from this module keep working:
_MOVED_TO_LOADING = ("apply_mapping", "apply_overrides", "load_config", "validate")


def __getattr__(name: str):
    if name in _MOVED_TO_LOADING:
        from megatron_biomed.config import loading

        return getattr(loading, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
