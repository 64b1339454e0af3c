"""Configuration: dataclasses, named presets, YAML and --set overrides, parameter counts."""

from megatron_biomed.config.experiment import ConfigError, ExperimentConfig
from megatron_biomed.config.loading import apply_mapping, apply_overrides, load_config, validate
from megatron_biomed.config.model import ModelConfig
from megatron_biomed.config.parallel import ParallelConfig
from megatron_biomed.config.presets import PRESETS, get_preset
from megatron_biomed.config.training import (
    CheckpointConfig,
    DataConfig,
    LoggingConfig,
    OptimizerConfig,
    TrainingConfig,
)

__all__ = [
    "CheckpointConfig",
    "ConfigError",
    "DataConfig",
    "ExperimentConfig",
    "LoggingConfig",
    "ModelConfig",
    "OptimizerConfig",
    "PRESETS",
    "ParallelConfig",
    "TrainingConfig",
    "apply_mapping",
    "apply_overrides",
    "get_preset",
    "load_config",
    "validate",
]
