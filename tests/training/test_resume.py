"""Resume: the run is killed (SIGKILL, no clean-up) at iteration 13, after its checkpoint at iteration 10;
a new process resumes from that checkpoint, and its steps 11-20 are the ones a straight 20-step run takes:
bit for bit in the same layout, within 1e-5 across layouts."""

from __future__ import annotations

from launch import assert_losses_close, resume_training, train_until_killed


def test_resume_is_bit_exact(initial_weights, reference, tmp_path):
    train_until_killed(1, [], initial_weights, tmp_path, keep_last=1)
    # keep_last=1: only the newest complete checkpoint is left.
    assert sorted(p.name for p in (tmp_path / "ck").iterdir() if p.name.startswith("iter_")) == ["iter_0000010"]
    got = resume_training(1, [], tmp_path)
    assert sorted(got) == list(range(11, 21))
    for it in range(11, 21):
        assert got[it]["loss"] == reference[it]["loss"], (
            f"iteration {it}: {got[it]['loss']!r} != {reference[it]['loss']!r}"
        )
        assert got[it]["lr"] == reference[it]["lr"]


def test_resume_across_layouts(resumed_across_layouts, reference):
    """Saved at TP2 x PP2 (4 ranks, distributed optimizer over nothing), resumed at TP1 x PP2 (2 ranks): the
    session's run (conftest.py), whose checkpoints tests/checkpoint/test_every_file_verified.py also checks."""
    got = resumed_across_layouts["metrics"]
    assert sorted(got) == list(range(11, 21))
    assert_losses_close(got, reference, range(11, 21), rtol=1e-5)


def test_resume_distributed_optimizer_across_dp(initial_weights, reference, tmp_path):
    """Distributed optimizer (fully_reshardable) saved at DP2, resumed at DP1: Adam states and step survive."""
    train_until_killed(2, ["parallel.use_distributed_optimizer=true"], initial_weights, tmp_path)
    got = resume_training(1, ["parallel.use_distributed_optimizer=true"], tmp_path)
    assert_losses_close(got, reference, range(11, 21), rtol=1e-5)
