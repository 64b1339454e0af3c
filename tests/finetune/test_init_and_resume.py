"""Starting a fine-tune from a checkpoint (any layout, only --init-from; a fine-tune with its head), clear mismatch
errors, exact resume."""

from __future__ import annotations

import pytest
import torch
from launch import read_metrics, run_finetune, run_pretrain
from toydata import FT_BASE, task_args

from megatron_biomed.checkpoint import CheckpointError, load_checkpoint
from megatron_biomed.config.loading import load_config
from megatron_biomed.models.heads import ScoringHead, find_head

TP2PP2 = ["parallel.tensor_model_parallel_size=2", "parallel.pipeline_model_parallel_size=2"]


def _first_loss(toy, init, nproc, layout, work):
    args = task_args(toy, "mc")
    args[args.index("--init-from") + 1] = str(init)
    run_finetune(
        nproc,
        args,
        FT_BASE + layout + ["train.train_iters=1", f"logging.metrics_file={work / 'm.jsonl'}"],
        work,
    )
    return read_metrics(work / "m.jsonl")[1]["loss"]


def test_body_saved_at_tp2_pp2_fine_tunes_at_tp1_and_back(toy, tmp_path):
    """A pretrained body saved at TP2 x PP2 loads into a TP1 fine-tune and into a TP2 x PP2 one alike (the head
    is fresh in both, from the same seed): the first losses agree."""
    pre = tmp_path / "pre"
    run_pretrain(
        4,
        ["data.mock=true", "train.train_iters=0", "train.eval_iters=0", f"data.tokenizer={toy['tok']}",
         f"checkpoint.save={pre}", *TP2PP2],
        tmp_path,
    )  # fmt: skip
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    tp1 = _first_loss(toy, pre, 1, [], tmp_path / "a")
    tp2pp2 = _first_loss(toy, pre, 4, TP2PP2, tmp_path / "b")
    assert abs(tp1 - tp2pp2) <= 5e-7 * abs(tp1)


def _saved(root, suffix: str) -> torch.Tensor:
    """The tensor whose key ends with ``suffix`` in the latest checkpoint under ``root``, read with torch's DCP."""
    import torch.distributed.checkpoint as dcp

    from megatron_biomed.checkpoint import checkpoint_path

    reader = dcp.FileSystemReader(str(checkpoint_path(str(root))))
    meta = reader.read_metadata().state_dict_metadata
    keys = [k for k in meta if k.endswith(suffix) and "optimizer" not in k]  # the weight, not its Adam moments
    assert len(keys) == 1, sorted(meta)
    key = keys[0]
    out = {key: torch.empty(meta[key].size, dtype=meta[key].properties.dtype)}
    dcp.load(out, storage_reader=reader, no_dist=True)
    return out[key]


def test_continuing_a_fine_tune_carries_its_head_only_when_asked(toy, tmp_path, single_rank_parallel):
    """--init-from a fine-tune --init-with-head (BioMedLM's MedMCQA -> MedQA head) starts from its trained head,
    bit for bit (one step at lr 0 saves it unchanged; the seeded fresh head differs). Without the flag the head
    starts fresh even though the checkpoint holds one; with it, a head of another shape (3 labels from a
    1-output multiple-choice head) is a clear error naming the tensor."""
    from inprocess import build

    mc = tmp_path / "mc"
    run_finetune(1, task_args(toy, "mc") + ["--save", str(mc)], FT_BASE + ["train.train_iters=1"], tmp_path)
    args = task_args(toy, "mc")
    args[args.index("--init-from") + 1] = str(mc)
    run_finetune(1, args + ["--init-with-head", "--save", str(tmp_path / "next")],
                 FT_BASE + ["train.train_iters=1", "optimizer.lr=0", "optimizer.min_lr=0"], tmp_path)  # fmt: skip
    for name in ("head.proj.weight", "head.proj.bias"):
        assert torch.equal(_saved(tmp_path / "next", name), _saved(mc, name)), name
    cfg = load_config("tiny-biomedlm")
    fresh = ScoringHead(cfg.model.hidden_size, 1, bias=True, init_std=cfg.model.init_method_std,
                        dtype=torch.float32, seed=cfg.train.seed)  # fmt: skip
    assert not torch.equal(fresh.proj.weight.detach(), _saved(mc, "head.proj.weight"))

    # In this process, the loader the training loop calls: a classification model from the mc checkpoint.
    cfg = load_config("tiny-biomedlm", overrides=["task.name=classify", f"data.tokenizer={toy['tok']}",
                                                  f"task.train_file={toy['pubmedqa']}", "task.format=pubmedqa",
                                                  "task.max_seq_length=32"])  # fmt: skip
    task, model = build(cfg)
    head = find_head(model).proj.weight.detach().clone()
    load_checkpoint(str(mc), [model], weights_only=True, new_params=task.new_parameter_prefixes())
    assert torch.equal(find_head(model).proj.weight, head)  # fresh: not read from the checkpoint
    embedding = "embedding.word_embeddings.weight"
    assert torch.equal(model.state_dict()[embedding], _saved(mc, embedding))  # the body is
    with pytest.raises(CheckpointError, match=r"head\.proj\.weight.*\(1, 64\), this model \(3, 64\)"):
        load_checkpoint(str(mc), [model], weights_only=True, new_params=())  # init_with_head

    args = task_args(toy, "classify")
    args[args.index("--init-from") + 1] = str(mc)
    proc = run_finetune(1, args + ["--init-with-head"], FT_BASE, tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "head.proj.weight" in proc.stderr and "(1, 64)" in proc.stderr and "(3, 64)" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_task_input_is_refused_before_work_starts(toy, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(toy["mc_train"].read_text().splitlines()[0] + "\n" + '{"question": "x"}\n')
    args = task_args(toy, "mc")
    args[args.index("--train-file") + 1] = str(bad)
    proc = run_finetune(1, args, FT_BASE, tmp_path, check=False)
    assert proc.returncode == 2
    assert f"{bad}:2:" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_finetune(1, args, FT_BASE + ["task.skip_bad=true", "train.train_iters=1"], tmp_path, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "skipped 1" in proc.stdout
    proc = run_finetune(1, task_args(toy, "mc"), FT_BASE + ["task.nmae=3"], tmp_path, check=False)
    assert proc.returncode == 2 and "task.nmae" in proc.stderr


@pytest.mark.parametrize("task", ["mc", "dpo"])
def test_resume_after_sigkill_is_bit_exact(toy, task, tmp_path):
    """Killed at iteration 5 after the save at 4, resumed with --load: steps 5-6 equal the straight run's."""
    common = [o for o in FT_BASE if not o.startswith("train.train_iters")] + [
        "train.train_iters=6", "checkpoint.save_interval=4",
    ]  # fmt: skip
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    for d in (straight, crashed):
        d.mkdir()
    run_finetune(1, task_args(toy, task) + ["--save", str(straight / "ckpt")],
                 common + [f"logging.metrics_file={straight / 'm.jsonl'}"], straight)  # fmt: skip
    proc = run_finetune(1, task_args(toy, task) + ["--save", str(crashed / "ckpt")],
                        common + ["train.inject_kill_at=5", f"logging.metrics_file={crashed / 'm.jsonl'}"],
                        crashed, check=False)  # fmt: skip
    assert proc.returncode != 0
    run_finetune(1, task_args(toy, task) + ["--load", str(crashed / "ckpt")],
                 common + [f"logging.metrics_file={crashed / 'm.jsonl'}"], crashed)  # fmt: skip
    want, got = read_metrics(straight / "m.jsonl"), read_metrics(crashed / "m.jsonl")
    for it in (5, 6):
        assert got[it]["loss"] == want[it]["loss"] and got[it]["grad_norm"] == want[it]["grad_norm"], it
