"""Multiple-choice and classification heads learn a learnable task, and score what an option says."""

from __future__ import annotations

import dataclasses

import torch
from launch import read_metrics, run_finetune
from toydata import FT_BASE, task_args

from megatron_biomed.checkpoint import read_run_config
from megatron_biomed.config.loading import load_config
from megatron_biomed.data.tasks import read_medqa
from megatron_biomed.finetune.predict import load_single_process, score_items
from megatron_biomed.parallel.initialize import shutdown_parallel

STEPS = 150


def _train(toy, task, tmp_path, extra=()):
    args = task_args(toy, task) + ["--save", str(tmp_path / "ckpt")]
    base = [o for o in FT_BASE if not o.startswith(("train.train_iters", "optimizer.lr="))]
    run_finetune(
        1,
        args,
        base + [f"train.train_iters={STEPS}", "optimizer.lr=3e-4", f"logging.metrics_file={tmp_path / 'm.jsonl'}",
                "train.eval_iters=4", *extra],
        tmp_path,
    )  # fmt: skip
    return read_metrics(tmp_path / "m.jsonl"), read_metrics(tmp_path / "m.jsonl", kind="valid")


def _moved(item, answer_at: int):
    """The same item with its correct option moved to position ``answer_at``."""
    opts = list(item.options)
    right = opts.pop(item.answer)
    opts.insert(answer_at, right)
    return dataclasses.replace(item, options=tuple(opts), answer=answer_at)


def test_multiple_choice_head_learns_and_follows_the_content(toy, tmp_path):
    train, valid = _train(toy, "mc", tmp_path)
    assert train[STEPS]["loss"] < 0.3 * train[1]["loss"]
    assert valid[STEPS]["accuracy"] >= 0.9, valid[STEPS]

    from megatron_biomed.training.tasks import build_task

    recorded = read_run_config(tmp_path / "ckpt")
    cfg = load_config()
    for section in ("model", "data", "task"):
        for k, v in recorded[section].items():
            setattr(getattr(cfg, section), k, v)
    task = build_task(cfg, None)
    model = load_single_process(cfg, task, str(tmp_path / "ckpt"))
    try:
        items = read_medqa(toy["mc_valid"])
        for at in (0, 3):
            moved = [_moved(it, at) for it in items]
            pred = score_items(model, task, moved).argmax(-1)
            # The predicted option moves with the content: wherever the colour stands, it is chosen.
            assert (pred == at).float().mean() >= 0.9, (at, pred.tolist())
        shuffled = [dataclasses.replace(it, options=it.options[::-1], answer=len(it.options) - 1 - it.answer)
                    for it in items]  # fmt: skip
        a = score_items(model, task, items)
        b = score_items(model, task, shuffled)
        assert torch.allclose(a, b.flip(-1), atol=1e-5)  # an option's score does not depend on its position
    finally:
        shutdown_parallel()


def test_classification_head_learns(toy, tmp_path):
    train, _ = _train(toy, "classify", tmp_path, ["train.eval_iters=0"])
    acc = sum(train[i]["accuracy"] for i in range(STEPS - 9, STEPS + 1)) / 10
    assert acc >= 0.9, acc
    assert train[STEPS]["loss"] < 0.3 * train[1]["loss"]
