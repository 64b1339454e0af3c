"""Shared fixtures for the fine-tuning tests: toy task files, a tokenizer, and a pretrained tiny checkpoint."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import toydata  # noqa: E402
from launch import run_pretrain  # noqa: E402

# Every step updates the weights (no zero-lr warmup step), fp32, no dropout, 32-token task sequences.
FT_BASE = [
    "train.train_iters=4",
    "train.global_batch_size=8",
    "train.micro_batch_size=2",
    "train.eval_iters=0",
    "train.precision=fp32",
    "optimizer.lr=1e-3",
    "optimizer.lr_warmup_iters=0",
    "optimizer.lr_decay_style=constant",
    "task.max_seq_length=32",
]


@pytest.fixture(scope="session")
def toy(tmp_path_factory) -> dict:
    """Paths of the toy files and of a pretrained (iteration 0) tiny-biomedlm checkpoint that records them."""
    root = tmp_path_factory.mktemp("toy")
    tok = toydata.make_tokenizer(root / "tok")
    files = {
        "tok": tok,
        "mc_train": toydata.write_jsonl(root / "mc_train.jsonl", toydata.mc_items(64, 1)),
        "mc_valid": toydata.write_jsonl(root / "mc_valid.jsonl", toydata.mc_items(32, 2)),
        "sft": toydata.write_jsonl(root / "sft.jsonl", toydata.sft_rows(48, 4)),
        "pref": toydata.write_jsonl(root / "pref.jsonl", toydata.preference_rows(32, 5)),
        "pref_valid": toydata.write_jsonl(root / "pref_valid.jsonl", toydata.preference_rows(16, 6)),
    }
    pqa = root / "pubmedqa.json"
    pqa.write_text(json.dumps(toydata.pubmedqa_items(48, 3)))
    files["pubmedqa"] = pqa
    run_pretrain(
        1,
        ["data.mock=true", "train.train_iters=0", "train.eval_iters=0", f"data.tokenizer={tok}",
         f"checkpoint.save={root / 'pretrained'}"],
        root,
    )  # fmt: skip
    files["pretrained"] = root / "pretrained"
    return files


def task_args(toy: dict, task: str) -> list[str]:
    """tools/finetune.py arguments for ``task`` on the toy data, starting from the pretrained checkpoint."""
    data = {
        "mc": ["--train-file", toy["mc_train"], "--valid-file", toy["mc_valid"], "--format", "medqa"],
        "classify": ["--train-file", toy["pubmedqa"], "--format", "pubmedqa"],
        "sft": ["--train-file", toy["sft"], "--format", "sft"],
        "dpo": ["--train-file", toy["pref"], "--format", "preference"],
    }[task]
    return ["--task", task, "--init-from", str(toy["pretrained"]), *map(str, data)]
