"""``tools/finetune.py``: fine-tune a checkpoint with a head (mc, classify), SFT or DPO on the training loop.

The model comes from the checkpoint's recorded config (``run_config.yaml``): ``--init-from PRETRAINED`` (weights
only; any head freshly initialised; fresh optimizer and schedule), ``--init-from FINETUNED --init-with-head``
(the fine-tuned head too: BioMedLM's MedQA head continued from its MedMCQA one) or ``--load RUN`` (resume a
fine-tune). ``--train-files FORMAT:PATH ...`` trains on several files at once (each in its own format).
Hyperparameters come from ``--preset`` / ``--config`` / ``--set`` as for pretraining; the task flags below are
shorthands for ``--set task.*``.
"""

from __future__ import annotations

import argparse
import json
import sys

from megatron_biomed.checkpoint import CheckpointError, latest_iteration, read_run_config
from megatron_biomed.config.experiment import ConfigError, ExperimentConfig
from megatron_biomed.config.loading import apply_mapping, apply_overrides, base_config, read_yaml_mapping
from megatron_biomed.data.tasks import READERS
from megatron_biomed.training.launch import run_main, validate_run_config
from megatron_biomed.training.pretrain import launch
from megatron_biomed.training.tasks import TASKS

# What a fine-tune takes from the checkpoint it starts from: the architecture and the tokenizer.
INHERITED_SECTIONS = ("model",)
INHERITED_FIELDS = (("data", "tokenizer"),)


def build_arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True, choices=[t for t in TASKS.names() if t != "pretrain"])
    p.add_argument("--init-from", help="pretrained checkpoint directory (weights only; the model config is read there)")
    p.add_argument("--init-with-head", action="store_true",
                   help="checkpoint.init_with_head: --init-from is a fine-tune; load its head too (same shape)")
    p.add_argument("--load", help="resume this fine-tune's checkpoint directory (also the default --save)")
    p.add_argument("--save", help="where to write checkpoints (default: --load)")
    p.add_argument("--train-file", help="task.train_file")
    p.add_argument("--train-files", nargs="+", metavar="FORMAT:PATH",
                   help="task.train_files: more training files, each FORMAT:PATH (or PATH in --format)")
    p.add_argument("--valid-file", help="task.valid_file")
    p.add_argument("--format", choices=tuple(READERS), help="task.format of the files")
    p.add_argument("--preset", help="named preset for the hyperparameters (the model comes from the checkpoint)")
    p.add_argument("--config", help="YAML file of overrides")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    p.add_argument("--world-size", type=int, default=None, help="with --dry-run: plan for this many ranks")
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    return p


def _recorded(path: str) -> dict | None:
    """The run config recorded in checkpoint directory ``path``, or None if it holds no checkpoint yet."""
    try:
        if latest_iteration(path) is None:
            return None
    except CheckpointError:
        pass  # an iter_* directory itself, or a broken tracker: read_run_config says which
    return read_run_config(path)


def finetune_config(args) -> ExperimentConfig:
    """Preset (hyperparameters), then the model of the checkpoint, then YAML, then the flags and --set."""
    mapping = read_yaml_mapping(args.config)
    cfg = base_config(args.preset, mapping)
    source = args.load if args.load and _has_checkpoint(args.load) else args.init_from
    recorded = _recorded(source) if source else None
    if recorded is not None:
        inherited = {k: recorded[k] for k in INHERITED_SECTIONS if k in recorded}
        for section, name in INHERITED_FIELDS:
            value = recorded.get(section, {}).get(name)
            if value is not None:
                inherited.setdefault(section, {})[name] = value
        apply_mapping(cfg, inherited, f"{source}/run_config.yaml")
    apply_mapping(cfg, mapping, str(args.config))  # the user's YAML wins over the checkpoint's model
    sets = [f"task.name={args.task}"]
    for flag, field in (("train_file", "task.train_file"), ("valid_file", "task.valid_file"),
                        ("format", "task.format")):  # fmt: skip
        if getattr(args, flag):
            sets.append(f"{field}={getattr(args, flag)}")
    if args.train_files:
        sets.append(f"task.train_files={json.dumps(args.train_files)}")  # a YAML flow list: paths may hold spaces
    if args.init_from:
        sets.append(f"checkpoint.init_from={args.init_from}")
    if args.init_with_head:
        if not args.init_from:
            raise ConfigError("--init-with-head loads the head of the --init-from checkpoint: give --init-from")
        sets.append("checkpoint.init_with_head=true")
    if args.load:
        sets.append(f"checkpoint.load={args.load}")
    save = args.save or args.load
    if save:
        sets.append(f"checkpoint.save={save}")
    apply_overrides(cfg, sets + list(args.overrides))
    validate_run_config(cfg)
    if cfg.task.name == "pretrain":
        raise ConfigError("tools/finetune.py trains a fine-tuning task; use tools/pretrain.py for pretraining")
    return cfg


def _has_checkpoint(path: str) -> bool:
    try:
        return latest_iteration(path) is not None
    except CheckpointError:
        return False


def main(argv=None) -> int:
    args = build_arg_parser().parse_args(argv)
    if not args.init_from and not args.load:
        print("error: give --init-from PRETRAINED_CHECKPOINT (or --load a fine-tune to resume)", file=sys.stderr)
        return 2
    return run_main(lambda: launch(finetune_config(args), args.dry_run, args.world_size))
