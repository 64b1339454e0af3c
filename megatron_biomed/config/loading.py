"""Build a run's ExperimentConfig: preset, then YAML file, then --set overrides, then one validation pass.

The choice fields whose allowed values are *registered* names -- ``model.family``, ``model.kernels``,
``task.name``, ``task.format`` (:data:`REGISTERED_FIELDS`) -- are checked against names the caller hands in:
config is the lowest layer and does not know the registries. An entry point's launcher
(training/launch.py ``load_run_config``) hands them all in.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from megatron_biomed.config.experiment import ConfigError, ExperimentConfig
from megatron_biomed.config.model import ACTIVATIONS, NORMALIZATIONS, POSITION_EMBEDDINGS
from megatron_biomed.config.presets import get_preset
from megatron_biomed.config.task import CHAT_TEMPLATES
from megatron_biomed.config.training import (
    LR_DECAY_STYLES,
    LR_WSD_DECAY_STYLES,
    PRECISIONS,
    SAMPLE_LAYOUTS,
    SAVE_ERROR_POLICIES,
)

__all__ = ["REGISTERED_FIELDS", "apply_mapping", "apply_overrides", "load_config", "validate"]

# Choice fields whose allowed values are the names of a seam's registry (given to validate by the caller).
REGISTERED_FIELDS = ("model.family", "model.kernels", "task.name", "task.format")


def _coerce(value: Any, current: Any, hint: Any, where: str) -> Any:
    """Convert a parsed override to the type of the field it replaces, refusing what does not fit."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    optional = origin is typing.Union and type(None) in args
    target = next((a for a in args if a is not type(None)), hint) if origin is typing.Union else hint
    if isinstance(target, str) or target is typing.Any:
        target = type(current) if current is not None else None
    target = typing.get_origin(target) or target
    if value is None:
        if optional or target is None:
            return None
        raise ConfigError(f"{where}: a value is required (this field cannot be empty)")
    if target is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if target in (int, float):
        kind = "an integer" if target is int else "a number"
        if isinstance(value, bool) or isinstance(value, (list, dict)):
            raise ConfigError(f"{where}: expected {kind}, got {value!r}")
        try:
            number = float(value) if target is float else (int(value) if not isinstance(value, float) else value)
        except ValueError as e:
            raise ConfigError(f"{where}: expected {kind}, got {value!r}") from e
        if target is int and isinstance(number, float):
            if not number.is_integer():
                raise ConfigError(f"{where}: expected an integer, got {value!r}")
            number = int(number)
        return number
    if target is list:
        if isinstance(value, str):
            return value.split()
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return value
    if target is str:
        if isinstance(value, (list, dict)):
            raise ConfigError(f"{where}: expected a single value, got {value!r}")
        return str(value)
    return value


def _set_path(
    cfg: Any, dotted: str, value: Any, source: str, prefix: str = "", sources: dict[str, str] | None = None
) -> None:
    parts = dotted.split(".")
    obj = cfg
    for i, name in enumerate(parts):
        names = {f.name: f for f in dataclasses.fields(obj)}
        here = prefix + ".".join(parts[: i + 1])
        if name not in names:
            raise ConfigError(f"{source}: unknown config field '{here}' (known here: {', '.join(sorted(names))})")
        if i == len(parts) - 1:
            hints = typing.get_type_hints(type(obj))
            current = getattr(obj, name)
            if dataclasses.is_dataclass(current):
                if not isinstance(value, dict):
                    raise ConfigError(f"{source}: '{here}' is a section; give a mapping")
                for k, v in value.items():
                    _set_path(current, str(k), v, source, prefix=here + ".", sources=sources)
            else:
                setattr(obj, name, _coerce(value, current, hints.get(name), f"{source}: {here}"))
                if sources is not None:
                    sources[here] = source
        else:
            obj = getattr(obj, name)
            if not dataclasses.is_dataclass(obj):
                raise ConfigError(f"{source}: '{here}' is not a section")


def apply_mapping(
    cfg: ExperimentConfig, mapping: dict, source: str = "config", sources: dict[str, str] | None = None
) -> ExperimentConfig:
    """Apply a nested mapping (e.g. loaded from YAML) onto ``cfg`` in place.

    ``sources``, when given, records ``dotted.field -> source`` for each value set (validation errors
    then say where a bad value came from)."""
    for key, value in mapping.items():
        if key == "preset":
            continue
        _set_path(cfg, key, value, source, sources=sources)
    return cfg


def apply_overrides(
    cfg: ExperimentConfig, overrides: Iterable[str], sources: dict[str, str] | None = None
) -> ExperimentConfig:
    """Apply ``section.field=value`` strings (values parsed as YAML scalars) in place."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected section.field=value")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw.strip() else None
        _set_path(cfg, key.strip(), value, f"--set {item}", sources=sources)
    return cfg


def _choice_problem(field: str, value: Any, allowed: Iterable[str], sources: dict[str, str]) -> str | None:
    allowed = tuple(allowed)
    if value in allowed:
        return None
    where = f"{sources[field]}: " if field in sources else ""
    return f"{where}{field}={value!r} is not one of: {', '.join(map(str, allowed))}"


def validate(
    cfg: ExperimentConfig,
    sources: dict[str, str] | None = None,
    registered: Mapping[str, Iterable[str]] | None = None,
) -> ExperimentConfig:
    """Refuse values that are typos of a fixed set of choices (activation, precision, ...), naming the field,
    where it was set (``sources`` from apply_mapping / apply_overrides) and the allowed values.

    ``registered`` maps fields of :data:`REGISTERED_FIELDS` to their registries' names (family, kernels, task,
    task-file format); a field not given is not checked here. Layout rules (what divides what for a world
    size) are checked later, by parallel/layout.py."""
    sources = sources or {}
    registered = registered or {}
    unknown = sorted(set(registered) - set(REGISTERED_FIELDS))
    if unknown:
        raise ValueError(f"validate: {unknown} are not registered-name fields ({', '.join(REGISTERED_FIELDS)})")
    m = cfg.model
    checks = [
        ("model.family", m.family, registered.get("model.family")),
        ("model.kernels", m.kernels, registered.get("model.kernels")),
        ("model.activation", m.activation, ACTIVATIONS),
        ("model.normalization", m.normalization, NORMALIZATIONS),
        ("model.position_embedding_type", m.position_embedding_type, POSITION_EMBEDDINGS),
        ("train.precision", cfg.train.precision, PRECISIONS),
        ("task.name", cfg.task.name, registered.get("task.name")),
        ("task.chat_template", cfg.task.chat_template, CHAT_TEMPLATES),
        ("checkpoint.on_save_error", cfg.checkpoint.on_save_error, SAVE_ERROR_POLICIES),
        ("optimizer.lr_decay_style", cfg.optimizer.lr_decay_style, LR_DECAY_STYLES),
        ("optimizer.lr_wsd_decay_style", cfg.optimizer.lr_wsd_decay_style, LR_WSD_DECAY_STYLES),
        ("data.sample_layout", cfg.data.sample_layout, SAMPLE_LAYOUTS),
    ]
    if cfg.task.format is not None:
        checks.append(("task.format", cfg.task.format, registered.get("task.format")))
    if cfg.task.medmcqa_cop_base is not None:
        checks.append(("task.medmcqa_cop_base", cfg.task.medmcqa_cop_base, (0, 1)))
    problems = [
        p for field, value, allowed in checks
        if allowed is not None and (p := _choice_problem(field, value, allowed, sources))
    ]  # fmt: skip
    for field, value in (("parallel.collective_timeout_s", cfg.parallel.collective_timeout_s),
                         ("parallel.init_timeout_s", cfg.parallel.init_timeout_s)):  # fmt: skip
        if value <= 0:
            where = f"{sources[field]}: " if field in sources else ""
            problems.append(f"{where}{field}={value!r} must be a positive number of seconds")
    for field, value, ok, what in (
        ("optimizer.layer_lr_decay", cfg.optimizer.layer_lr_decay, 0 < cfg.optimizer.layer_lr_decay <= 1,
         "must be in (0, 1] (1.0 = off)"),
        ("optimizer.ema_decay", cfg.optimizer.ema_decay, 0 <= cfg.optimizer.ema_decay < 1,
         "must be in [0, 1) (0.0 = off)"),
        ("optimizer.ema_eval", cfg.optimizer.ema_eval, not cfg.optimizer.ema_eval or cfg.optimizer.ema_decay > 0,
         "needs optimizer.ema_decay > 0"),
    ):  # fmt: skip
        if not ok:
            where = f"{sources[field]}: " if field in sources else ""
            problems.append(f"{where}{field}={value!r} {what}")
    if problems:
        raise ConfigError("; ".join(problems))
    return cfg


def read_yaml_mapping(yaml_path: str | Path | None) -> dict:
    """The top-level mapping of a YAML config file ({} for no file); a clear error for bad YAML."""
    if yaml_path is None:
        return {}
    try:
        mapping = yaml.safe_load(Path(yaml_path).read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{yaml_path}: not valid YAML: {e}") from e
    if not isinstance(mapping, dict):
        raise ConfigError(f"{yaml_path}: expected a mapping at the top level")
    return mapping


def base_config(preset: str | None, mapping: dict) -> ExperimentConfig:
    """The named preset (or the YAML's own ``preset:``), or the defaults."""
    preset = preset or mapping.get("preset")
    return get_preset(preset) if preset else ExperimentConfig()


def load_config(
    preset: str | None = None,
    yaml_path: str | Path | None = None,
    overrides: Iterable[str] = (),
    registered: Mapping[str, Iterable[str]] | None = None,
) -> ExperimentConfig:
    """Preset, then YAML file (which may name its own ``preset:``), then --set overrides; then validate
    (``registered``: see :func:`validate`)."""
    mapping = read_yaml_mapping(yaml_path)
    cfg = base_config(preset, mapping)
    sources: dict[str, str] = {}
    apply_mapping(cfg, mapping, str(yaml_path), sources)
    apply_overrides(cfg, overrides, sources)
    return validate(cfg, sources, registered)
