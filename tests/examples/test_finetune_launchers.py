"""The fine-tuning launchers in examples/: their dry-run plans against what each script spells out (task,
layout, world size, batch, sequence length, learning rate, warmup computed from epochs), layout errors, and
the command lines they start (torchrun, srun).

As in test_launchers.py, the launchers run with bash for real but with a PYTHON (or TORCHRUN) that records
its arguments; the recorded ``tools/finetune.py ...`` command line then goes through the same ``main`` in
this process. No test trains: the real fine-tuning runs are tests/finetune/ and the quickstart."""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from launch import CHILD_ENV, ROOT
from test_launchers import launcher_text

from megatron_biomed.finetune.cli import build_arg_parser
from megatron_biomed.finetune.cli import main as finetune_main

BIOMEDLM = ROOT / "examples" / "biomedlm"
BIOLLM = ROOT / "examples" / "biollm"
MEDQA = BIOMEDLM / "finetune_medqa.sh"
MEDMCQA = BIOMEDLM / "finetune_medmcqa.sh"
PUBMEDQA = BIOMEDLM / "finetune_pubmedqa.sh"
BIOASQ = BIOMEDLM / "finetune_bioasq.sh"
SFT = BIOLLM / "sft_70b.sbatch"
DPO = BIOLLM / "dpo_70b.sbatch"
LAUNCHERS = [MEDQA, MEDMCQA, PUBMEDQA, BIOASQ, SFT, DPO]

MEDQA_FROM_MEDMCQA = BIOMEDLM / "finetune_medqa_from_medmcqa.sh"
MMLU_HEAD = BIOMEDLM / "finetune_mmlu_head.sh"
# BioMedLM's input formats (finetune/formats.py): multiple choice as its code, PubMedQA / BioASQ as its paper.
INPUT_FORMATS = {MEDQA: "biomedlm-mc", MEDMCQA: "biomedlm-mc", PUBMEDQA: "biomedlm-tokens", BIOASQ: "biomedlm-tokens"}

# launcher: (task, format, world size, TP, PP, DP, max_seq_length)
EXPECTED = {
    MEDQA: ("mc", "medqa", 8, 1, 1, 8, 512),
    MEDMCQA: ("mc", "medmcqa", 8, 1, 1, 8, 512),
    PUBMEDQA: ("classify", "pubmedqa", 8, 1, 1, 8, 1024),
    BIOASQ: ("classify", "bioasq", 8, 1, 1, 8, 1024),
    SFT: ("sft", "sft", 256, 8, 4, 8, 4096),
    DPO: ("dpo", "preference", 256, 8, 4, 8, 4096),
}

# Variables the launchers read (or torchrun / SLURM set): none may leak in from the caller's shell.
LAUNCHER_VARIABLES = {
    "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "NNODES", "NPROC_PER_NODE",
    "GPUS_PER_NODE", "DRY_RUN", "TP", "PP", "VPP", "SEQUENCE_PARALLEL", "MICRO_BATCH_SIZE", "TRAIN_ITERS",
    "USE_DISTRIBUTED_OPTIMIZER", "REPO_DIR", "TORCHRUN", "DATA_DIR", "TOKENIZER", "INIT_FROM", "RUN_NAME",
    "CHECKPOINT_DIR", "TENSORBOARD_DIR", "SAVE_INTERVAL", "TRAIN_FILE", "VALID_FILE", "TRAIN_ITEMS",
    "VALID_ITEMS", "EPOCHS", "GLOBAL_BATCH", "LR", "MIN_LR", "WARMUP_RATIO", "SEED", "MEDMCQA_COP_BASE",
    "DPO_BETA", "DPO_SFT_WEIGHT", "INPUT_FORMAT", "STAGE", "MEDMCQA_RUN", "MEDQA_RUN", "MEDQA_TRAIN_FILE",
    "MMLU_DIR", "SUBJECTS",
}


def launcher_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") and k not in LAUNCHER_VARIABLES}
    env.update(PYTHON=sys.executable, **CHILD_ENV)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_launcher(script: Path, *args: str, timeout: int = 120, **env) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(script), *args], env=launcher_env(**env), capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, check=False)


def recorder(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A stand-in executable that writes its arguments (NUL-separated) to a file, and that file."""
    record = tmp_path / f"{name}.argv"
    fake = tmp_path / name
    fake.write_text(f'#!/usr/bin/env bash\nprintf "%s\\0" "$@" > {shlex.quote(str(record))}\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    return fake, record


def captured_argv(script: Path, tmp_path: Path, *args: str, **env) -> list[str]:
    """The arguments the launcher hands to tools/finetune.py in a dry run. The checkpoint directories point
    into tmp_path, so the model comes from the launcher's --preset (not from a checkpoint on this machine)."""
    fake, record = recorder(tmp_path, "record_args")
    env = {"INIT_FROM": tmp_path / "no-pretrained", "CHECKPOINT_DIR": tmp_path / "ck", **env}
    proc = run_launcher(script, *args, **{"DRY_RUN": 1, **env, "PYTHON": fake})
    assert proc.returncode == 0, proc.stderr
    return record.read_text().split("\0")[:-1]


def finetune_in_process(argv: list[str], capsys) -> tuple[int, str, str]:
    assert argv[0] == "tools/finetune.py"
    capsys.readouterr()
    rc = finetune_main(argv[1:])
    out, err = capsys.readouterr()
    return rc, out, err


def plan_from(out: str) -> dict:
    assert "plan: {" in out, out
    return json.loads(out[out.index("plan: {") + len("plan: "):])


def dry_run_plan(script: Path, tmp_path: Path, capsys, *args: str, **env) -> dict:
    rc, out, err = finetune_in_process(captured_argv(script, tmp_path, *args, **env), capsys)
    assert rc == 0, err
    return plan_from(out)


def default(script: Path, name: str) -> str:
    """The default the script (or what it sources) gives variable ``name`` (``NAME="${NAME:-value}"``)."""
    m = re.search(rf'^{name}="\$\{{{name}:-([^}}]+)\}}"', launcher_text(script), re.M)
    assert m, f"{script.name} sets no default for {name}"
    return m.group(1)


def schedule(script: Path, **env) -> tuple[int, int, int]:
    """(train iters, warmup iters, eval iters) from the script's documented defaults (or ``env``): steps =
    ceil(EPOCHS x TRAIN_ITEMS / GLOBAL_BATCH), warmup = ceil(WARMUP_RATIO x steps)."""
    value = {k: float(env.get(k, default(script, k))) for k in
             ("EPOCHS", "TRAIN_ITEMS", "GLOBAL_BATCH", "WARMUP_RATIO", "VALID_ITEMS")}  # fmt: skip
    iters = math.ceil(value["EPOCHS"] * value["TRAIN_ITEMS"] / value["GLOBAL_BATCH"])
    return iters, math.ceil(value["WARMUP_RATIO"] * iters), math.ceil(value["VALID_ITEMS"] / value["GLOBAL_BATCH"])


# --- full-scale plans -------------------------------------------------------------------------------------


@pytest.mark.parametrize("script", LAUNCHERS, ids=lambda p: p.name)
def test_dry_run_plan_matches_the_script(script, tmp_path, capsys):
    plan = dry_run_plan(script, tmp_path, capsys)
    task, fmt, world, tp, pp, dp, seq = EXPECTED[script]
    assert (plan["task"], plan["task_options"]["format"]) == (task, fmt)
    assert (plan["world_size"], plan["tensor_model_parallel_size"], plan["pipeline_model_parallel_size"],
            plan["data_parallel_size"]) == (world, tp, pp, dp)
    assert plan["task_options"]["max_seq_length"] == seq
    assert plan["task_options"]["input_format"] == INPUT_FORMATS.get(script, "plain")
    assert plan["use_distributed_optimizer"] is True and plan["precision"] == "bf16"
    gb = int(default(script, "GLOBAL_BATCH"))
    assert plan["global_batch_size"] == gb
    assert plan["num_microbatches"] == gb // (plan["micro_batch_size"] * dp)
    assert plan["lr"] == float(default(script, "LR"))
    iters, warmup, eval_iters = schedule(script)
    assert (plan["train_iters"], plan["lr_warmup_iters"], plan["eval_iters"]) == (iters, warmup, eval_iters)
    assert plan["init_from"] == str(tmp_path / "no-pretrained")
    if "biomedlm" in script.parts:
        # BioMedLM's fine-tuning code: warmup over half the steps, linear decay, AdamW with HF defaults.
        assert float(default(script, "WARMUP_RATIO")) == 0.5
        assert (plan["optimizer"], plan["lr_decay_style"], plan["min_lr"], plan["weight_decay"]) == \
            ("adamw", "linear", 0.0, 0.0)
        assert 2.55e9 < plan["parameters"] < 2.75e9
    else:
        # The 70B preset's optimizer and layout.
        assert (plan["optimizer"], plan["lr_decay_style"], plan["weight_decay"]) == ("adamw", "cosine", 0.1)
        assert plan["sequence_parallel"] is True and plan["task_options"]["chat_template"] == "llama2"
        assert 68.5e9 < plan["parameters"] < 69.5e9


def test_published_values(tmp_path, capsys):
    """The values with a source, each checked once: MedQA's 512 tokens, SFT's lr and batch, DPO's beta."""
    assert dry_run_plan(MEDQA, tmp_path, capsys)["eval_interval"] == 500  # BioMedLM code: --eval_steps 500
    assert (default(SFT, "EPOCHS"), default(SFT, "GLOBAL_BATCH"), default(SFT, "LR")) == ("2", "64", "2e-5")
    dpo = dry_run_plan(DPO, tmp_path, capsys)
    assert (dpo["task_options"]["dpo_beta"], dpo["task_options"]["dpo_sft_weight"]) == (0.1, 0.0)
    medmcqa = dry_run_plan(MEDMCQA, tmp_path, capsys, MEDMCQA_COP_BASE=0)
    assert medmcqa["task_options"]["medmcqa_cop_base"] == 0
    for script in LAUNCHERS:
        text = launcher_text(script)
        assert '--set optimizer.lr_warmup_iters="${WARMUP_ITERS}"' in text and "--set train.precision=bf16" in text
        if "biomedlm" in script.parts:
            assert "stanford-crfm/BioMedLM" in text and "our choice" in text


def test_schedule_follows_epochs_and_overrides(tmp_path, capsys):
    """Steps and warmup are recomputed from EPOCHS / TRAIN_ITEMS / GLOBAL_BATCH; the caller's --set wins."""
    env = {"EPOCHS": 1.5, "TRAIN_ITEMS": 1000, "GLOBAL_BATCH": 48, "VALID_ITEMS": 100}
    plan = dry_run_plan(PUBMEDQA, tmp_path, capsys, "--set", "train.eval_interval=10", **env)
    assert (plan["train_iters"], plan["lr_warmup_iters"], plan["eval_iters"]) == schedule(PUBMEDQA, **env) == \
        (32, 16, 3)
    assert (plan["global_batch_size"], plan["num_microbatches"], plan["eval_interval"]) == (48, 6, 10)
    plan = dry_run_plan(SFT, tmp_path, capsys, TRAIN_ITERS=1000, NNODES=64)
    assert (plan["train_iters"], plan["lr_warmup_iters"], plan["world_size"], plan["data_parallel_size"]) == \
        (1000, 30, 512, 16)
    # No validation file: no --valid-file and no evaluation.
    plan = dry_run_plan(BIOASQ, tmp_path, capsys, VALID_FILE="")
    assert plan["eval_iters"] == 0


def test_dry_run_end_to_end():
    """The real thing once: bash, the real interpreter, the launcher's own defaults."""
    proc = run_launcher(MEDQA, DRY_RUN=1, INIT_FROM="/nonexistent/pretrained", CHECKPOINT_DIR="/nonexistent/ck")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    plan = plan_from(proc.stdout)
    assert (plan["task"], plan["world_size"], plan["lr_warmup_iters"]) == ("mc", 8, schedule(MEDQA)[1])


@pytest.mark.parametrize("script, env, rules", [
    (MEDQA, {"TP": 3}, ["TP (3) must divide num_attention_heads (20)",
                        "world size 8 must equal TP x PP x DP"]),
    (PUBMEDQA, {"NPROC_PER_NODE": 6, "TP": 4}, ["world size 6 must equal TP x PP x DP"]),
    (SFT, {"PP": 3}, ["PP (3) = 3 must divide num_layers (80)", "world size 256 must equal TP x PP x DP"]),
    (DPO, {"TP": 16}, ["TP (16) must divide num_query_groups (8, the KV heads)"]),
], ids=["medqa-tp3", "pubmedqa-world6", "sft-pp3", "dpo-tp16"])
def test_broken_layout_fails_naming_the_rule(script, env, rules, tmp_path, capsys):
    rc, out, err = finetune_in_process(captured_argv(script, tmp_path, **env), capsys)
    assert rc == 2
    assert "error: invalid parallel layout" in err
    for rule in rules:
        assert rule in err, err
    assert "plan:" not in out


# --- BioMedLM's protocols ---------------------------------------------------------------------------------


def test_medqa_continues_the_medmcqa_head(tmp_path, capsys):
    """Stage 2 of finetune_medqa_from_medmcqa.sh: MedQA from the stage-1 checkpoint, its head loaded."""
    argv = captured_argv(MEDQA_FROM_MEDMCQA, tmp_path, STAGE="medqa")
    ns = build_arg_parser().parse_args(argv[1:])
    assert (ns.task, ns.format, ns.init_with_head) == ("mc", "medqa", True)
    assert ns.init_from == str(ROOT / "runs" / "biomedlm-2.7b-medmcqa" / "checkpoints")
    plan = plan_from(finetune_in_process(argv, capsys)[1])
    assert plan["task_options"]["input_format"] == "biomedlm-mc"


def test_mmlu_head_trains_on_medmcqa_and_medqa_then_scores_mmlu(tmp_path, capsys):
    argv = captured_argv(MMLU_HEAD, tmp_path, STAGE="train", MEDQA_TRAIN_FILE="/d/medqa.jsonl")
    plan = plan_from(finetune_in_process(argv, capsys)[1])
    assert (plan["task"], plan["task_options"]["format"]) == ("mc", "medmcqa")
    assert plan["task_options"]["train_files"] == ["medqa:/d/medqa.jsonl"]
    assert plan["train_iters"] == math.ceil(2 * 193000 / 64)  # EPOCHS x (MedMCQA + MedQA) / GLOBAL_BATCH
    fake, record = recorder(tmp_path, "evaluate")
    proc = run_launcher(MMLU_HEAD, STAGE="evaluate", PYTHON=fake, MMLU_DIR="/d/mmlu", SUBJECTS="anatomy")
    assert proc.returncode == 0, proc.stderr
    argv = record.read_text().split("\0")[:-1]
    assert argv[0] == "tools/evaluate.py" and argv[argv.index("--head") + 1] == "mc"
    assert argv[argv.index("--format") + 1] == "mmlu"
    assert argv[argv.index("--test-file") + 1] == "/d/mmlu/anatomy_test.csv"


# --- what the launchers start ------------------------------------------------------------------------------


def test_torchrun_command_line(tmp_path):
    """finetune_medqa.sh under a stand-in torchrun: one node of 8, tools/finetune.py with the pretrained
    checkpoint as --init-from and this run's directory as --load / --save; TOKENIZER only when set."""
    from torch.distributed.run import get_args_parser

    fake, record = recorder(tmp_path, "torchrun")
    ck, pre = tmp_path / "ck", tmp_path / "pretrained"
    proc = run_launcher(MEDQA, "--set", "train.train_iters=3", TORCHRUN=fake, MASTER_ADDR="node001",
                        MASTER_PORT=29999, INIT_FROM=pre, CHECKPOINT_DIR=ck, TENSORBOARD_DIR=tmp_path / "tb")
    assert proc.returncode == 0, proc.stderr
    args = get_args_parser().parse_args(record.read_text().split("\0")[:-1])
    assert (int(args.nnodes), args.node_rank, int(args.nproc_per_node)) == (1, 0, 8)
    assert (args.master_addr, args.master_port, args.training_script) == ("node001", 29999, "tools/finetune.py")
    ns = build_arg_parser().parse_args(args.training_script_args)
    assert (ns.task, ns.format, ns.preset, ns.dry_run) == ("mc", "medqa", "biomedlm-2.7b", False)
    assert (ns.init_from, ns.load, ns.save) == (str(pre), str(ck), str(ck))
    assert ns.train_file == "/data/medqa/train.jsonl" and ns.valid_file == "/data/medqa/dev.jsonl"
    assert ns.overrides[-1] == "train.train_iters=3"  # the caller's --set comes last and wins
    assert not any(o.startswith("data.tokenizer=") for o in ns.overrides)  # the checkpoint's tokenizer
    assert ck.is_dir() and (tmp_path / "tb").is_dir()
    run_launcher(MEDQA, TORCHRUN=fake, TOKENIZER="/tok", CHECKPOINT_DIR=ck, TENSORBOARD_DIR=tmp_path / "tb")
    ns = build_arg_parser().parse_args(get_args_parser().parse_args(
        record.read_text().split("\0")[:-1]).training_script_args)
    assert "data.tokenizer=/tok" in ns.overrides


@pytest.mark.parametrize("script, job", [(SFT, "biollm-70b-sft"), (DPO, "biollm-70b-dpo")], ids=["sft", "dpo"])
def test_sbatch_header_and_srun(script, job, tmp_path):
    text = script.read_text()
    directives = [line.split(None, 1)[1] for line in text.splitlines() if line.startswith("#SBATCH")]
    for d in (f"--job-name={job}", "--nodes=32", "--ntasks-per-node=8", "--gpus-per-node=8", "--signal=USR1@120",
              "--requeue", "--open-mode=append"):
        assert d in directives
    proc = run_launcher(script)
    assert proc.returncode == 1
    assert "not inside a SLURM job" in proc.stderr and "DRY_RUN=1" in proc.stderr
    # Inside a job (stand-in srun): the same recipe, started on every task through srun.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake, record = recorder(bin_dir, "srun")
    proc = run_launcher(script, PATH=f"{bin_dir}:{os.environ['PATH']}", SLURM_JOB_ID=4242, SLURM_JOB_NUM_NODES=32,
                        CHECKPOINT_DIR=tmp_path / "ck", TENSORBOARD_DIR=tmp_path / "tb")
    assert proc.returncode == 0, proc.stderr
    argv = record.read_text().split("\0")[:-1]
    assert argv[:3] == ["--ntasks-per-node=8", "--kill-on-bad-exit=1", sys.executable]
    assert argv[3] == "tools/finetune.py"
    ns = build_arg_parser().parse_args(argv[4:])
    assert ns.task == ("sft" if script == SFT else "dpo") and not ns.dry_run
    want = "runs/biollm-70b/checkpoints" if script == SFT else "runs/biollm-70b-sft/checkpoints"
    assert ns.init_from == str(ROOT / want)
