"""A real save killed (SIGKILL) at each point inside it leaves the previous checkpoint the newest complete one,
and a resume from it repeats the killed run's steps bit for bit with dropout on (so the RNG states must be
restored), and saves over what the crash left.

Points (checkpoint/faults.py's SAVE_KILL_POINTS): before the shards are written, after them (before the manifest),
before the rename that publishes the checkpoint, and before the tracker is replaced."""

from __future__ import annotations

import pytest
from launch import BASE, read_metrics, run_pretrain

from megatron_biomed.checkpoint import iteration_dir, latest_iteration, verify_checkpoint
from megatron_biomed.checkpoint.faults import KILL_IN_SAVE_ENV, SAVE_KILL_POINTS

# Dropout on, so that the resumed steps are bit-exact only if the RNG states were restored.
RUN = BASE + [
    "train.train_iters=4",
    "checkpoint.save_interval=2",
    "model.hidden_dropout=0.1",
    "model.attention_dropout=0.1",
]


@pytest.mark.parametrize("point", SAVE_KILL_POINTS)
def test_kill_inside_a_real_save(point, tmp_path):
    ck = tmp_path / "ck"
    proc = run_pretrain(
        1,
        RUN + [f"checkpoint.save={ck}", f"logging.metrics_file={tmp_path / 'a.jsonl'}"],
        tmp_path,
        check=False,
        env_extra={KILL_IN_SAVE_ENV: f"{point}@4"},
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    killed = read_metrics(tmp_path / "a.jsonl")
    assert sorted(killed) == [1, 2, 3, 4]
    assert latest_iteration(ck) == 2
    assert verify_checkpoint(iteration_dir(ck, 2)) is True
    if point == "before_tracker":
        assert verify_checkpoint(iteration_dir(ck, 4)) is True  # published, but the tracker still names 2
    else:
        assert not iteration_dir(ck, 4).exists()
    if point in ("after_shards", "before_rename"):
        return  # they leave what before_shards leaves (a .tmp directory): resumed there, to keep CI time small

    proc = run_pretrain(
        1,
        RUN + [f"checkpoint.load={ck}", f"checkpoint.save={ck}", f"logging.metrics_file={tmp_path / 'b.jsonl'}"],
        tmp_path,
    )
    assert "at iteration 2 (consumed samples 16)" in proc.stdout
    resumed = read_metrics(tmp_path / "b.jsonl")
    assert sorted(resumed) == [3, 4]
    for it in (3, 4):
        assert resumed[it]["loss"] == killed[it]["loss"], (point, it)
        assert resumed[it]["grad_norm"] == killed[it]["grad_norm"], (point, it)
    assert latest_iteration(ck) == 4 and verify_checkpoint(iteration_dir(ck, 4)) is True
    assert not list(ck.glob("*.tmp"))
