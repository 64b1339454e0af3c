"""examples/biomamba/sft.sh against BioMamba's published SFT values (LeoYML/BioMamba @ e61db22:
ft_biomamba/config.py SFTConfig, run_sft.py, run.sh, data.py, trainer.py): a drift in the launcher fails here.
The launcher runs with bash for real, with a PYTHON that records the tools/finetune.py command line, which then
plans in this process (tests/examples/test_finetune_launchers.py's helpers); nothing trains."""

from __future__ import annotations

import math

from launch import ROOT
from test_finetune_launchers import captured_argv, finetune_in_process, plan_from, run_launcher

SFT = ROOT / "examples" / "biomamba" / "sft.sh"

# The published values: --set key -> value (their source in sft.sh's comments).
PUBLISHED = {
    "optimizer.lr": "2e-5",  # SFTConfig.lr, run_sft.py --lr
    "optimizer.weight_decay": "0.01",  # SFTConfig.weight_decay, run_sft.py
    "optimizer.adam_beta1": "0.9",  # trainer.py AdamW betas
    "optimizer.adam_beta2": "0.95",
    "optimizer.clip_grad": "1.0",  # max_grad_norm
    "optimizer.lr_decay_style": "cosine",  # scheduler_type "cosine": get_cosine_schedule_with_warmup (to 0)
    "optimizer.min_lr": "0.0",
    "train.global_batch_size": "32",  # batch_size 8 x accumulation_steps 4
    "train.micro_batch_size": "8",
    "train.precision": "bf16",
    "train.eval_interval": "50",  # eval_steps
    "train.seed": "42",
    "task.max_seq_length": "1024",  # max_length
    "task.pack": "false",  # padding="max_length": one example per sequence
    "task.chat_template": "biomamba",  # instruction + " " + answer, loss on the answer only, no eod
}


def _sets(argv: list[str]) -> dict[str, str]:
    return dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv) if a == "--set")


def test_published_values_and_schedule(tmp_path, capsys):
    argv = captured_argv(SFT, tmp_path, "130m")
    sets = _sets(argv)
    assert {k: sets.get(k) for k in PUBLISHED} == PUBLISHED
    rc, out, err = finetune_in_process(argv, capsys)
    assert rc == 0, err
    plan = plan_from(out)
    # 5 epochs of their 1,142 training items (800 PubMedQA + 342 BioASQ) at 32 per step; warmup 10% of the steps.
    iters = math.ceil(5 * 1142 / 32)
    assert (plan["train_iters"], plan["lr_warmup_iters"], plan["eval_iters"]) == (iters, math.ceil(0.1 * iters),
                                                                                  math.ceil(200 / 32))  # fmt: skip
    assert (plan["task"], plan["world_size"], plan["num_microbatches"], plan["name"]) == ("sft", 1, 4, "biomamba-130m")
    assert plan["task_options"]["format"] == "sft" and plan["lr"] == 2e-5


def test_size_is_checked_first(tmp_path):
    proc = run_launcher(SFT, "7b", DRY_RUN=1)
    assert proc.returncode == 2 and "one of 130m, 370m, 780m, 1.3b, 2.7b (got '7b')" in proc.stderr
