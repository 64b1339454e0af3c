"""tools/finetune.py's config: preset, then the checkpoint's recorded model, then the YAML file, then flags."""

import dataclasses

import pytest
import yaml

from megatron_biomed.checkpoint import RUN_CONFIG, TRACKER, iteration_dir
from megatron_biomed.config.experiment import ConfigError
from megatron_biomed.config.presets import get_preset
from megatron_biomed.finetune.cli import build_arg_parser, finetune_config


def _fake_checkpoint(root, model: dict, tokenizer: str):
    """A directory that reads as a complete checkpoint with a recorded run config (no tensors needed here)."""
    d = iteration_dir(root, 3)
    d.mkdir(parents=True)
    (d / "metadata.json").write_text("{}")
    (d / RUN_CONFIG).write_text(yaml.safe_dump({"model": model, "data": {"tokenizer": tokenizer}}))
    (root / TRACKER).write_text("3")
    return root


def _parse(*argv):
    return finetune_config(build_arg_parser().parse_args(["--task", "mc", *argv]))


def test_checkpoint_model_then_yaml_then_set(tmp_path):
    model = dataclasses.asdict(get_preset("tiny-biomedlm").model) | {"num_layers": 3, "hidden_size": 48}
    ckpt = _fake_checkpoint(tmp_path / "pre", model, "gpt2-tok")
    yaml_file = tmp_path / "ft.yaml"
    overrides = {"model": {"num_layers": 5}, "optimizer": {"lr": 0.125}, "train": {"train_iters": 7}}
    yaml_file.write_text(yaml.safe_dump(overrides))
    cfg = _parse("--init-from", str(ckpt), "--preset", "tiny-llama", "--config", str(yaml_file),
                 "--set", "train.train_iters=9")  # fmt: skip
    assert cfg.model.hidden_size == 48  # from the checkpoint, over the preset's
    assert cfg.model.family == get_preset("tiny-biomedlm").model.family
    assert cfg.model.num_layers == 5  # the YAML wins over the checkpoint
    assert cfg.data.tokenizer == "gpt2-tok"
    assert cfg.optimizer.lr == 0.125
    assert cfg.train.train_iters == 9  # --set wins over the YAML
    assert cfg.checkpoint.init_from == str(ckpt) and cfg.task.name == "mc"


def test_yaml_names_its_preset_and_typos_are_refused(tmp_path):
    ckpt = _fake_checkpoint(tmp_path / "pre", dataclasses.asdict(get_preset("tiny-biomedlm").model), "tok")
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({"preset": "tiny-llama", "optimizer": {"lr": 0.5}}))
    cfg = _parse("--init-from", str(ckpt), "--config", str(good))
    assert cfg.optimizer.lr == 0.5
    llama, biomedlm = get_preset("tiny-llama").optimizer, get_preset("tiny-biomedlm").optimizer
    assert cfg.optimizer.min_lr == llama.min_lr != biomedlm.min_lr  # the YAML's preset, not the default
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"optimizer": {"lrr": 0.5}}))
    with pytest.raises(ConfigError, match="lrr"):
        _parse("--init-from", str(ckpt), "--config", str(bad))
