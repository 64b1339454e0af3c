"""One rank of two killed (SIGKILL) in the middle of a step, under ``torchrun --max-restarts 1``.

Rank 1 dies after its first micro-batch's forward of step 9 (train.inject_kill_at / inject_kill_rank, first
attempt only), while rank 0 is inside the step's collectives, and while the background save of iteration 8 is
in flight (it was started after step 8; the save of 4 was finalised before it started). The survivor must not
hang: torchrun's agent sees the dead worker, stops the other and starts both again, and the new attempt resumes
from the newest complete checkpoint, 4, and finishes the run. The curve: the steps both attempts ran (5-8) are
bit-identical, and every step is the one-process reference run's within 1e-5 (2 data-parallel ranks reduce in
another order than one process).

Two ranks, not four: a dead rank, a survivor blocked in a collective with it, and a non-zero rank dying (not the
one that writes the checkpoint's common state) are all there with two; four only doubled the interpreter starts.
"""

from __future__ import annotations

import json
import re
import time

from launch import BASE, assert_losses_close, run_pretrain

from megatron_biomed.checkpoint import iteration_dir, latest_iteration, verify_checkpoint

STEPS = 10
RUN = [o for o in BASE if not o.startswith("train.train_iters")] + [
    f"train.train_iters={STEPS}",
    "optimizer.lr_decay_iters=20",  # the reference's schedule (20 steps), so that its steps 1-10 compare
]


def test_one_rank_of_two_killed_mid_step_restarts_and_finishes(initial_weights, reference, tmp_path):
    ck, metrics = tmp_path / "ck", tmp_path / "m.jsonl"
    start = time.monotonic()
    proc = run_pretrain(
        2,
        RUN
        + [
            f"checkpoint.init_from={initial_weights}",
            f"checkpoint.load={ck}",
            f"checkpoint.save={ck}",
            "checkpoint.save_interval=4",
            "checkpoint.async_save=true",
            "train.inject_kill_at=9",
            "train.inject_kill_rank=1",
            "parallel.collective_timeout_s=60",
            f"logging.metrics_file={metrics}",
        ],
        tmp_path,
        torchrun_args=["--max-restarts", "1"],
        timeout=400,
    )
    elapsed = time.monotonic() - start
    out = proc.stdout + proc.stderr
    # torchrun's agent names the dead rank and its signal, then restarts the job itself.
    assert re.search(r"failed \(exitcode: -9\) local_rank: 1 ", out), out[-3000:]
    assert "restarted by torchrun (restart 1 of at most 1)" in out
    assert "at iteration 4 (consumed samples 32)" in out
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    rows = [r for r in rows if r["kind"] == "train"]
    its = [r["iteration"] for r in rows]
    assert its == list(range(1, 9)) + list(range(5, STEPS + 1)), its
    first, second = rows[:8], rows[8:]
    for a, b in zip(first[4:], second[:4], strict=True):
        assert (a["loss"], a["grad_norm"]) == (b["loss"], b["grad_norm"]), a["iteration"]
    curve = {r["iteration"]: r for r in rows}  # the last attempt's row wins
    assert_losses_close(curve, reference, range(1, STEPS + 1), rtol=1e-5)
    assert latest_iteration(ck) == STEPS and verify_checkpoint(iteration_dir(ck, STEPS)) is True
    # Bounded: the survivors did not wait out their 60 s collective timeout (nor torchrun's default).
    assert elapsed < 300, elapsed
