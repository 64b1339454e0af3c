"""The recipe launchers in examples/: their dry-run plans at full scale, the exact configuration they
pass to tools/pretrain.py, layout errors and the torchrun command line. The .sbatch scripts' real runs (real
sbatch and srun, tiny models, preemption and resubmission) are test_launchers_slurm.py.

Most tests run the launcher with bash for real but with a PYTHON (or TORCHRUN) that records its
arguments; the recorded ``tools/pretrain.py ...`` command line then goes through the same ``main`` in this
process, which saves an interpreter start per case on a shared 2-core machine."""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from launch import CHILD_ENV, ROOT

from megatron_biomed.config import load_config
from megatron_biomed.models.registry import count_parameters
from megatron_biomed.training.pretrain import build_arg_parser
from megatron_biomed.training.pretrain import main as pretrain_main

BIOMEDLM_SH = ROOT / "examples" / "biomedlm" / "pretrain_2.7b.sh"
BIOMEDLM_SBATCH = ROOT / "examples" / "biomedlm" / "pretrain_2.7b.sbatch"
BIOLLM_SH = ROOT / "examples" / "biollm" / "pretrain_70b.sh"
BIOLLM_SBATCH = ROOT / "examples" / "biollm" / "pretrain_70b.sbatch"
LAUNCHERS = [BIOMEDLM_SH, BIOMEDLM_SBATCH, BIOLLM_SH, BIOLLM_SBATCH]

# A tiny model of the same family, for real runs of the recipes on one CPU process.
TINY = ["--set", "model.num_layers=2", "--set", "model.hidden_size=64", "--set", "model.num_attention_heads=4",
        "--set", "model.ffn_hidden_size=256", "--set", "model.seq_length=64", "--set", "model.vocab_size=512",
        "--set", "train.global_batch_size=2", "--set", "train.train_iters=2", "--set", "train.precision=fp32",
        "--set", "train.eval_interval=0", "--set", "train.eval_iters=0", "--set", "data.mock=true"]


# Variables the launchers read (or torchrun sets): none may leak in from the caller's shell.
LAUNCHER_VARIABLES = {
    "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "NNODES", "NPROC_PER_NODE",
    "GPUS_PER_NODE", "DRY_RUN", "TP", "PP", "VPP", "SEQUENCE_PARALLEL", "MICRO_BATCH_SIZE", "TRAIN_ITERS",
    "USE_DISTRIBUTED_OPTIMIZER", "REPO_DIR", "TORCHRUN", "DATA_DIR", "TOKENIZER", "DATA_CACHE_DIR", "INIT_FROM",
    "PUBMED_ABSTRACTS_PREFIX", "PMC_FULLTEXT_PREFIX", "PUBMED_ABSTRACTS_WEIGHT", "PMC_FULLTEXT_WEIGHT",
    "RUN_NAME", "CHECKPOINT_DIR", "TENSORBOARD_DIR", "SAVE_INTERVAL",
}


def launcher_env(**extra) -> dict:
    """The caller's environment without any launcher variables (no SLURM job, no torchrun rank)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") and k not in LAUNCHER_VARIABLES}
    env.update(PYTHON=sys.executable, **CHILD_ENV)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_launcher(script: Path, *args: str, timeout: int = 300, **env) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(script), *args], env=launcher_env(**env), capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, check=False)


def plan_of(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    out = proc.stdout
    assert "plan: {" in out, out
    return json.loads(out[out.index("plan: {") + len("plan: "):])


def captured_argv(script: Path, tmp_path: Path, *args: str, **env) -> list[str]:
    """The arguments the launcher hands to tools/pretrain.py, caught by a PYTHON that records them."""
    record = tmp_path / f"{script.name}.argv"
    fake = tmp_path / "record_args"
    fake.write_text(f'#!/usr/bin/env bash\nprintf "%s\\0" "$@" > {shlex.quote(str(record))}\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    proc = run_launcher(script, *args, **{"DRY_RUN": 1, **env, "PYTHON": fake})
    assert proc.returncode == 0, proc.stderr
    return record.read_text().split("\0")[:-1]


def captured_config(script: Path, tmp_path: Path, *args: str, **env):
    argv = captured_argv(script, tmp_path, *args, **env)
    assert argv[0] == "tools/pretrain.py"
    ns = build_arg_parser().parse_args(argv[1:])
    assert ns.dry_run
    return load_config(ns.preset, ns.config, ns.overrides), ns


def pretrain_in_process(argv: list[str], capsys) -> tuple[int, str, str]:
    """Run the command line a launcher built (``tools/pretrain.py ...``) through the same ``main``."""
    assert argv[0] == "tools/pretrain.py"
    capsys.readouterr()
    rc = pretrain_main(argv[1:])
    out, err = capsys.readouterr()
    return rc, out, err


def launcher_text(script: Path) -> str:
    """The script's text followed by the shared parts it sources (``source "${REPO_DIR}/examples/..."``)."""
    text = script.read_text()
    for shared in re.findall(r'^source "\$\{REPO_DIR\}/([^"]+)"', text, re.M):
        text += "\n" + (ROOT / shared).read_text()
    return text


# --- full-scale plans -------------------------------------------------------------------------------------

EXPECTED = {
    # launcher: (world size, TP, PP, DP, micro-batches per step)
    BIOMEDLM_SH: (8, 1, 1, 8, 32),
    BIOMEDLM_SBATCH: (128, 1, 1, 128, 2),
    BIOLLM_SH: (256, 8, 4, 8, 64),
    BIOLLM_SBATCH: (256, 8, 4, 8, 64),
}


@pytest.mark.parametrize("script", LAUNCHERS, ids=lambda p: p.name)
def test_dry_run_plan(script, tmp_path, capsys):
    rc, out, err = pretrain_in_process(captured_argv(script, tmp_path), capsys)
    assert rc == 0, err
    plan = json.loads(out[out.index("plan: {") + len("plan: "):])
    world, tp, pp, dp, micro = EXPECTED[script]
    assert (plan["world_size"], plan["tensor_model_parallel_size"], plan["pipeline_model_parallel_size"],
            plan["data_parallel_size"], plan["num_microbatches"]) == (world, tp, pp, dp, micro)
    assert plan["precision"] == "bf16"
    if "biomedlm" in script.parts:
        assert plan["tokens_per_step"] == 1024 * 1024 == 1_048_576
        assert plan["train_iters"] == 286_102
        assert abs(plan["train_tokens"] - 300e9) / 300e9 < 1e-4
        assert 2.55e9 < plan["parameters"] < 2.75e9
        assert plan["optimizer"] == "decoupled_adamw"
        assert (plan["lr"], plan["weight_decay"]) == (1.6e-4, 1.6e-5)
    else:
        assert plan["tokens_per_step"] == 512 * 4096 == 2_097_152
        assert 68.5e9 < plan["parameters"] < 69.5e9
        assert (plan["optimizer"], plan["lr"]) == ("adamw", 2e-5)


def test_sbatch_dry_run_end_to_end(tmp_path, capsys):
    """The real thing once: bash, no SLURM variables, the real interpreter; the same plan as in-process."""
    plan = plan_of(run_launcher(BIOLLM_SBATCH, DRY_RUN=1))
    rc, out, _ = pretrain_in_process(captured_argv(BIOLLM_SBATCH, tmp_path), capsys)
    assert rc == 0
    assert plan == json.loads(out[out.index("{"):])
    assert (plan["world_size"], plan["data_parallel_size"], plan["parameters"]) == (256, 8, 69_009_416_192)


def test_dry_run_argument_and_dev_overrides(tmp_path, capsys):
    """``--dry-run`` as an argument, NNODES for the torchrun script, and the caller's --set winning."""
    argv = captured_argv(BIOMEDLM_SH, tmp_path, "--dry-run", "--set", "train.train_iters=10",
                         "--set", "parallel.tensor_model_parallel_size=2", NNODES=16, DRY_RUN=0)
    assert argv.count("--dry-run") == 1
    rc, out, err = pretrain_in_process(argv, capsys)
    assert rc == 0, err
    plan = json.loads(out[out.index("{"):])
    assert plan["world_size"] == 128
    assert (plan["tensor_model_parallel_size"], plan["data_parallel_size"]) == (2, 64)
    assert plan["train_iters"] == 10 and plan["train_tokens"] == 10 * 1_048_576


@pytest.mark.parametrize("script, env, rules", [
    (BIOMEDLM_SBATCH, {"TP": 8}, ["TP (8) must divide num_attention_heads (20)"]),
    (BIOLLM_SBATCH, {"PP": 3}, ["PP (3) = 3 must divide num_layers (80)",
                                "world size 256 must equal TP x PP x DP"]),
    (BIOLLM_SH, {"TP": 16}, ["TP (16) must divide num_query_groups (8, the KV heads)"]),
], ids=["biomedlm-tp8", "biollm-pp3", "biollm-tp16"])
def test_broken_layout_fails_naming_the_rule(script, env, rules, tmp_path, capsys):
    rc, out, err = pretrain_in_process(captured_argv(script, tmp_path, **env), capsys)
    assert rc != 0
    assert "error: invalid parallel layout" in err
    for rule in rules:
        assert rule in err, err
    assert "plan:" not in out


# --- what exactly the launchers pass --------------------------------------------------------------------

@pytest.mark.parametrize("script", [BIOMEDLM_SH, BIOMEDLM_SBATCH], ids=lambda p: p.name)
def test_biomedlm_recipe_is_the_papers(script, tmp_path):
    cfg, ns = captured_config(script, tmp_path, PUBMED_ABSTRACTS_WEIGHT=0.25, PMC_FULLTEXT_WEIGHT=0.75,
                              DATA_DIR="/d", TOKENIZER="/tok", CHECKPOINT_DIR="/ck", TENSORBOARD_DIR="/tb")
    m, o, t = cfg.model, cfg.optimizer, cfg.train
    assert (m.num_layers, m.num_attention_heads, m.hidden_size, m.ffn_size, m.seq_length, m.vocab_size) == \
        (32, 20, 2560, 10240, 1024, 28896)
    assert (m.position_embedding_type, m.normalization, m.activation, m.tie_embeddings) == \
        ("learned_absolute", "LayerNorm", "gelu_tanh", True)
    assert (o.name, o.lr, o.weight_decay, o.adam_beta1, o.adam_beta2, o.adam_eps, o.lr_decay_style, o.min_lr,
            o.lr_warmup_iters) == ("decoupled_adamw", 1.6e-4, 1.6e-5, 0.9, 0.95, 1e-8, "cosine", 0.0, 100)
    assert (t.global_batch_size, t.train_iters, t.precision) == (1024, 286_102, "bf16")
    assert abs(count_parameters(m).total - 2.7e9) / 2.7e9 < 0.05
    # Blend weights, prefixes, tokenizer and output directories come from the variables.
    assert cfg.data.blend == ["0.25", "/d/pubmed_abstracts_text_document", "0.75", "/d/pmc_fulltext_text_document"]
    assert cfg.data.tokenizer == "/tok"
    assert (cfg.checkpoint.save, cfg.checkpoint.load, cfg.logging.tensorboard_dir) == ("/ck", "/ck", "/tb")
    assert cfg.parallel.use_distributed_optimizer
    assert ns.world_size == (8 if script.suffix == ".sh" else 128)
    # Every architecture and optimizer value is spelled out in the script (or the recipe it sources), not left
    # to the preset.
    text = launcher_text(script)
    for needle in ("model.num_layers=32", "model.num_attention_heads=20", "model.hidden_size=2560",
                   "model.seq_length=1024", "model.vocab_size=28896", "optimizer.lr=1.6e-4",
                   "optimizer.weight_decay=1.6e-5", "optimizer.adam_beta2=0.95", "train.global_batch_size=1024",
                   "train.train_iters=286102", "train.precision=bf16", "optimizer.lr_decay_style=cosine",
                   "optimizer.lr_warmup_iters=100"):
        assert f"--set {needle}" in text, needle


@pytest.mark.parametrize("script", [BIOLLM_SH, BIOLLM_SBATCH], ids=lambda p: p.name)
def test_biollm_recipe_is_llama2_70b(script, tmp_path):
    cfg, ns = captured_config(script, tmp_path, INIT_FROM="/llama2-70b", VPP=5)
    m, o, t, p = cfg.model, cfg.optimizer, cfg.train, cfg.parallel
    assert (m.num_layers, m.hidden_size, m.num_attention_heads, m.num_query_groups, m.ffn_size) == \
        (80, 8192, 64, 8, 28672)
    assert (m.normalization, m.activation, m.position_embedding_type, m.add_bias_linear, m.tie_embeddings) == \
        ("RMSNorm", "swiglu", "rope", False, False)
    assert (m.seq_length, m.vocab_size) == (4096, 32000 + 2000)
    assert (o.name, o.lr, o.min_lr, o.lr_warmup_iters, o.lr_decay_style) == ("adamw", 2e-5, 2e-6, 2000, "cosine")
    assert (t.global_batch_size * m.seq_length, t.precision) == (2_097_152, "bf16")
    assert (p.tensor_model_parallel_size, p.pipeline_model_parallel_size, p.virtual_pipeline_model_parallel_size,
            p.sequence_parallel, p.use_distributed_optimizer) == (8, 4, 5, True, True)
    assert cfg.checkpoint.init_from == "/llama2-70b"
    assert ns.world_size == 256
    # Without VPP / INIT_FROM the launcher passes None, not an empty string.
    cfg, _ = captured_config(script, tmp_path)
    assert cfg.parallel.virtual_pipeline_model_parallel_size is None and cfg.checkpoint.init_from is None


@pytest.mark.parametrize("script, nodes", [(BIOMEDLM_SBATCH, 16), (BIOLLM_SBATCH, 32)], ids=["biomedlm", "biollm"])
def test_sbatch_header(script, nodes):
    text = script.read_text()
    directives = [line.split(None, 1)[1] for line in text.splitlines() if line.startswith("#SBATCH")]
    for d in (f"--nodes={nodes}", "--ntasks-per-node=8", "--gpus-per-node=8", "--signal=USR1@120", "--requeue",
              "--open-mode=append"):
        assert d in directives
    assert "set -euo pipefail" in text
    assert "srun " in text and "tools/pretrain.py" in text and '"$@"' in text


def test_sbatch_outside_slurm_does_not_train():
    proc = run_launcher(BIOMEDLM_SBATCH)
    assert proc.returncode == 1
    assert "not inside a SLURM job" in proc.stderr and "DRY_RUN=1" in proc.stderr


# --- real (tiny) runs through the launchers ----------------------------------------------------------------


@pytest.mark.parametrize("script, nodes", [(BIOMEDLM_SH, 1), (BIOLLM_SH, 32)], ids=["biomedlm", "biollm"])
def test_torchrun_command_line(script, nodes, tmp_path):
    """What the .sh launchers start, read back with torchrun's own argument parser (real tiny training
    through the .sbatch launchers is test_launchers_slurm.py)."""
    from torch.distributed.run import get_args_parser

    record = tmp_path / "torchrun.argv"
    fake = tmp_path / "torchrun"
    fake.write_text(f'#!/usr/bin/env bash\nprintf "%s\\0" "$@" > {shlex.quote(str(record))}\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    proc = run_launcher(script, "--set", "train.train_iters=3", TORCHRUN=fake, NODE_RANK=1, MASTER_ADDR="node001",
                        MASTER_PORT=29999, CHECKPOINT_DIR=tmp_path / "ck", TENSORBOARD_DIR=tmp_path / "tb")
    assert proc.returncode == 0, proc.stderr
    args = get_args_parser().parse_args(record.read_text().split("\0")[:-1])
    assert (int(args.nnodes), args.node_rank, int(args.nproc_per_node)) == (nodes, 1, 8)
    assert (args.master_addr, args.master_port) == ("node001", 29999)
    assert args.training_script == "tools/pretrain.py"
    ns = build_arg_parser().parse_args(args.training_script_args)
    assert not ns.dry_run and ns.world_size is None
    cfg = load_config(ns.preset, ns.config, ns.overrides)
    assert cfg.train.train_iters == 3  # the caller's --set comes last and wins
    assert cfg.checkpoint.save == cfg.checkpoint.load == str(tmp_path / "ck")
    assert (tmp_path / "ck").is_dir() and (tmp_path / "tb").is_dir()
