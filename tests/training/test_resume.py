"""Resume: the run is killed (SIGKILL, no clean-up) at iteration 13, after its checkpoint at iteration 10;
a new process resumes from that checkpoint, and its steps 11-20 are the ones a straight 20-step run takes:
bit for bit in the same layout, within 1e-5 across layouts."""

from __future__ import annotations

from pathlib import Path

from launch import BASE, assert_losses_close, read_metrics, run_pretrain

from megatron_biomed.checkpoint import latest_iteration


def _first_half(nproc, extra, initial_weights, work: Path, keep_last=0):
    proc = run_pretrain(
        nproc,
        BASE
        + extra
        + [
            f"checkpoint.init_from={initial_weights}",
            f"checkpoint.save={work / 'ck'}",
            "checkpoint.save_interval=5",
            f"checkpoint.keep_last={keep_last}",
            "train.inject_kill_at=13",
            f"logging.metrics_file={work / 'a.jsonl'}",
        ],
        work,
        check=False,
    )
    assert proc.returncode != 0  # killed: -9 for one process, torchrun reports the failed ranks
    assert max(read_metrics(work / "a.jsonl")) == 12
    assert latest_iteration(work / "ck") == 10


def _second_half(nproc, extra, work: Path):
    proc = run_pretrain(
        nproc,
        BASE
        + extra
        + [
            f"checkpoint.load={work / 'ck'}",
            f"checkpoint.save={work / 'ck'}",
            f"logging.metrics_file={work / 'b.jsonl'}",
        ],
        work,
    )
    assert "resumed from" in proc.stdout and "at iteration 10 (consumed samples 80)" in proc.stdout
    return read_metrics(work / "b.jsonl")


def test_resume_is_bit_exact(initial_weights, reference, tmp_path):
    _first_half(1, [], initial_weights, tmp_path, keep_last=1)
    # keep_last=1: only the newest complete checkpoint is left.
    assert sorted(p.name for p in (tmp_path / "ck").iterdir() if p.name.startswith("iter_")) == ["iter_0000010"]
    got = _second_half(1, [], tmp_path)
    assert sorted(got) == list(range(11, 21))
    for it in range(11, 21):
        assert got[it]["loss"] == reference[it]["loss"], (
            f"iteration {it}: {got[it]['loss']!r} != {reference[it]['loss']!r}"
        )
        assert got[it]["lr"] == reference[it]["lr"]


def test_resume_across_layouts(initial_weights, reference, tmp_path):
    """Saved at TP2 x PP2 (4 ranks, distributed optimizer over nothing), resumed at TP1 x PP2 (2 ranks)."""
    _first_half(
        4,
        ["parallel.tensor_model_parallel_size=2", "parallel.pipeline_model_parallel_size=2"],
        initial_weights,
        tmp_path,
    )
    got = _second_half(2, ["parallel.pipeline_model_parallel_size=2"], tmp_path)
    assert sorted(got) == list(range(11, 21))
    assert_losses_close(got, reference, range(11, 21), rtol=1e-5)


def test_resume_distributed_optimizer_across_dp(initial_weights, reference, tmp_path):
    """Distributed optimizer (fully_reshardable) saved at DP2, resumed at DP1: Adam states and step survive."""
    _first_half(2, ["parallel.use_distributed_optimizer=true"], initial_weights, tmp_path)
    got = _second_half(1, ["parallel.use_distributed_optimizer=true"], tmp_path)
    assert_losses_close(got, reference, range(11, 21), rtol=1e-5)
