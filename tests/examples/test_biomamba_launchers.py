"""examples/biomamba/continue_pretrain.{sh,sbatch} <size>: their dry-run plans, the configuration they pass to
tools/pretrain.py (80/10/10 blend from data/blends.py, GPT-NeoX-20B vocabulary padded to 50,288, per-corpus
validation, the public checkpoint as init_from), the command lines they start for every size (the sizes table
of _recipe.sh against the presets), the size argument's check and the TP > 1 refusal. The launchers run with
bash for real, with a PYTHON (or torchrun, srun) that records its arguments; a recorded command line goes
through pretrain's ``main`` here."""

from __future__ import annotations

import json
import os
import re
import sys

import pytest
from launch import ROOT
from test_finetune_launchers import recorder
from test_launchers import captured_argv, captured_config, pretrain_in_process, run_launcher

from megatron_biomed.config.presets import BIOMAMBA_SHAPES, PRESETS
from megatron_biomed.data.blends import get_blend
from megatron_biomed.models.registry import count_parameters

BIOMAMBA = ROOT / "examples" / "biomamba"
SH = BIOMAMBA / "continue_pretrain.sh"
SBATCH = BIOMAMBA / "continue_pretrain.sbatch"

SIZES = {"130m": 129.0, "370m": 368.3, "780m": 780.2, "1.3b": 1343.8, "2.7b": 2702.6}
# launcher -> (world size, micro-batches per step)
PLANS = {
    "130m.sh": (8, 2), "370m.sh": (8, 5), "780m.sh": (8, 4), "1.3b.sh": (8, 8), "2.7b.sh": (8, 6),
    "130m.sbatch": (8, 2), "370m.sbatch": (8, 5), "780m.sbatch": (16, 2), "1.3b.sbatch": (32, 2),
    "2.7b.sbatch": (24, 2),
}  # fmt: skip


def _script(name: str):
    """``"130m.sh"`` -> (the launcher, its size argument)."""
    size, ext = name.rsplit(".", 1)
    return BIOMAMBA / f"continue_pretrain.{ext}", size


def _number(text: str) -> int | float:
    return float(text) if "." in text else int(text)


def recipe_sizes() -> dict[str, dict[str, int | float]]:
    """The sizes table the launchers read (BIOMAMBA_SIZES in _recipe.sh): size -> its columns."""
    text = (BIOMAMBA / "_recipe.sh").read_text()
    table = re.search(r'^BIOMAMBA_SIZES="\n(.*?)^"', text, re.M | re.S).group(1).splitlines()
    header = table[0].lstrip("# ").split()
    assert header == ["size", "layers", "hidden", "global-batch", "layer-lr-decay", "train-iters", "warmup",
                      "wsd-decay", "micro-batch", "nodes"], header  # fmt: skip
    rows = [line.split() for line in table[1:] if line.strip()]
    return {row[0]: dict(zip(header[1:], map(_number, row[1:]), strict=True)) for row in rows}


@pytest.mark.parametrize("name", list(PLANS))
def test_dry_run_plan(name, tmp_path, capsys):
    script, size = _script(name)
    rc, out, err = pretrain_in_process(captured_argv(script, tmp_path, size), capsys)
    assert rc == 0, err
    plan = json.loads(out[out.index("plan: {") + len("plan: "):])
    world, micro = PLANS[name]
    assert (plan["world_size"], plan["data_parallel_size"], plan["num_microbatches"]) == (world, world, micro)
    assert plan["tensor_model_parallel_size"] == 1 and plan["precision"] == "bf16"
    assert plan["model"]["family"] == "mamba2"
    assert (plan["model"]["vocab_size"], plan["model"]["padded_vocab_size"]) == (50277, 50288)
    assert plan["tokens_per_step"] == PRESETS[f"biomamba-{size}"]().train.global_batch_size * 1024


@pytest.mark.parametrize("size", list(SIZES))
def test_recipe_configuration(size, tmp_path):
    cfg, _ = captured_config(SH, tmp_path, size, DATA_DIR="/d")
    m = cfg.model
    assert round(count_parameters(m, padded_vocab=True).total / 1e6, 1) == SIZES[size]
    assert (m.mamba_state_dim, m.mamba_head_dim, m.mamba_expand, m.mamba_num_groups) == (128, 64, 2, 1)
    prefixes = {"pubmed": "/d/pubmed_text_document", "c4": "/d/c4_en_text_document",
                "wikipedia": "/d/wikipedia_en_text_document"}  # fmt: skip
    assert [str(x) for x in cfg.data.blend] == [str(x) for x in get_blend("biomamba").resolve(prefixes)]
    assert cfg.data.tokenizer == "/d/gpt-neox-20b"
    assert [c.split("=", 1)[0] for c in cfg.train.eval_corpora] == ["pubmed", "c4", "wikipedia"]
    assert cfg.train.eval_interval > 0
    assert cfg.checkpoint.init_from == f"/d/checkpoints/mamba2-{size}"
    assert cfg.checkpoint.load == cfg.checkpoint.save  # a restarted job resumes instead of re-initialising
    # The authors' optimizer, schedule, batch and samples: what the preset holds (tests/config/
    # test_published_biomamba.py checks the preset against the published values).
    preset = PRESETS[f"biomamba-{size}"]()
    assert cfg.optimizer == preset.optimizer
    assert (cfg.model.seq_length, cfg.data.sample_layout) == (preset.model.seq_length, "document")
    assert (cfg.train.global_batch_size, cfg.train.train_iters, cfg.train.eval_interval) == (
        preset.train.global_batch_size, preset.train.train_iters, preset.train.eval_interval
    )


def test_tp2_is_refused_with_what_to_do(tmp_path, capsys):
    argv = captured_argv(SH, tmp_path, "130m", TP=2)
    rc, out, err = pretrain_in_process(argv, capsys)
    assert rc != 0
    assert "1 B/C group" in out + err and "tensor_model_parallel_size=1" in out + err


# --- one pair for every size: what each starts ---------------------------------------------------------------


def test_sizes_table_is_the_presets():
    """The launchers offer exactly the biomamba-<size> presets, with the presets' layers, hidden size, batch,
    layer-wise lr decay and schedule steps."""
    table = recipe_sizes()
    assert list(table) == list(BIOMAMBA_SHAPES)
    for size, row in table.items():
        assert f"biomamba-{size}" in PRESETS
        assert (row["hidden"], row["layers"]) == BIOMAMBA_SHAPES[size]
        cfg = PRESETS[f"biomamba-{size}"]()
        o, t = cfg.optimizer, cfg.train
        assert (row["global-batch"], row["layer-lr-decay"], row["train-iters"], row["warmup"], row["wsd-decay"]) == (
            t.global_batch_size, o.layer_lr_decay, t.train_iters, o.lr_warmup_iters, o.lr_wsd_decay_iters
        )


def _value(argv: list[str], field: str) -> str:
    """The value of ``--set field=...`` in a command line (the last one, as the config loader reads it)."""
    values = [a.split("=", 1)[1] for a in argv if a.startswith(f"{field}=")]
    assert values, f"no --set {field}= in {argv}"
    return values[-1]


@pytest.mark.parametrize("size", list(SIZES))
def test_every_size_starts_the_same_training_command(size, tmp_path):
    """For each size: the preset, shapes and micro-batch of the tables in the command lines; the .sh and the
    .sbatch start the same training command (torchrun's and srun's), and their dry runs differ only in the
    planned world size (8 GPUs on one node, or the size's nodes of 8)."""
    hidden, layers = BIOMAMBA_SHAPES[size]
    row = recipe_sizes()[size]
    dirs = {"CHECKPOINT_DIR": tmp_path / "ck", "TENSORBOARD_DIR": tmp_path / "tb"}

    dry_sh = captured_argv(SH, tmp_path, size, **dirs)
    dry_sbatch = captured_argv(SBATCH, tmp_path, size, **dirs)
    for argv in (dry_sh, dry_sbatch):
        assert argv[:3] == ["tools/pretrain.py", "--preset", f"biomamba-{size}"]
        assert (_value(argv, "model.num_layers"), _value(argv, "model.hidden_size")) == (str(layers), str(hidden))
        assert _value(argv, "train.micro_batch_size") == str(row["micro-batch"])
        assert argv[-3:-1] == ["--world-size", str(8 if argv is dry_sh else 8 * row["nodes"])]
        assert argv[-1] == "--dry-run"
    assert dry_sh[:-3] == dry_sbatch[:-3]

    torchrun, torchrun_record = recorder(tmp_path, "torchrun")
    proc = run_launcher(SH, size, "--set", "train.train_iters=3", TORCHRUN=torchrun, **dirs)
    assert proc.returncode == 0, proc.stderr
    torchrun_argv = torchrun_record.read_text().split("\0")[:-1]
    assert torchrun_argv[:10] == ["--nnodes", "1", "--node-rank", "0", "--nproc-per-node", "8",
                                  "--master-addr", "127.0.0.1", "--master-port", "29500"]  # fmt: skip
    training = torchrun_argv[10:]

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _, srun_record = recorder(bin_dir, "srun")
    proc = run_launcher(SBATCH, size, "--set", "train.train_iters=3", PATH=f"{bin_dir}:{os.environ['PATH']}",
                        SLURM_JOB_ID=4242, SLURM_JOB_NUM_NODES=row["nodes"], SLURM_SUBMIT_DIR=ROOT, **dirs)
    assert proc.returncode == 0, proc.stderr
    assert "planned for" not in proc.stderr  # the allocation is the size's nodes
    srun_argv = srun_record.read_text().split("\0")[:-1]
    assert srun_argv[:3] == ["--ntasks-per-node=8", "--kill-on-bad-exit=1", sys.executable]
    assert srun_argv[3:] == training
    # The training command is the dry run's without the plan's arguments, with the caller's --set last.
    assert training == dry_sh[:-3] + ["--set", "train.train_iters=3"]


@pytest.mark.parametrize("script", [SH, SBATCH], ids=lambda p: p.name)
@pytest.mark.parametrize("args", [(), ("13m",), ("--dry-run", "130m")], ids=["missing", "unknown", "not-first"])
def test_size_argument_is_checked_before_anything_runs(script, args, tmp_path):
    python, python_record = recorder(tmp_path, "python")
    torchrun, torchrun_record = recorder(tmp_path, "torchrun")
    proc = run_launcher(script, *args, PYTHON=python, TORCHRUN=torchrun, DRY_RUN=1)
    assert proc.returncode == 2
    assert "takes the size as its first argument, one of " + ", ".join(recipe_sizes()) in proc.stderr
    assert not python_record.exists() and not torchrun_record.exists()


def test_sbatch_names_the_planned_nodes(tmp_path):
    """#SBATCH cannot follow the size argument: outside SLURM the error gives the submit command with the size's
    nodes, and a job on other nodes than planned says so (and still runs)."""
    proc = run_launcher(SBATCH, "2.7b")
    assert proc.returncode == 1
    assert "not inside a SLURM job" in proc.stderr
    assert f"sbatch --nodes=3 --job-name=biomamba-2.7b {SBATCH} 2.7b" in proc.stderr
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    recorder(bin_dir, "srun")
    proc = run_launcher(SBATCH, "2.7b", PATH=f"{bin_dir}:{os.environ['PATH']}", SLURM_JOB_ID=4242,
                        SLURM_JOB_NUM_NODES=2, SLURM_SUBMIT_DIR=ROOT, CHECKPOINT_DIR=tmp_path / "ck",
                        TENSORBOARD_DIR=tmp_path / "tb")
    assert proc.returncode == 0, proc.stderr
    assert "biomamba-2.7b is planned for 3 node(s)" in proc.stderr and "this job has 2" in proc.stderr
