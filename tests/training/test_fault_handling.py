"""Preemption signals and non-finite losses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
from launch import BASE, CHILD_ENV, PRETRAIN, free_port, read_metrics, run_pretrain

from megatron_biomed.checkpoint import latest_iteration

LONG = [o for o in BASE if not o.startswith("train.train_iters")] + ["train.train_iters=100000"]


def _start(nproc: int, overrides: list[str], work) -> subprocess.Popen:
    args = ["--preset", "tiny-biomedlm"] + [a for o in overrides for a in ("--set", o)]
    if nproc > 1:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            str(nproc),
            "--master-port",
            str(free_port()),
            str(PRETRAIN),
            *args,
        ]
    else:
        cmd = [sys.executable, str(PRETRAIN), *args]
    env = dict(os.environ, **CHILD_ENV)
    return subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_iteration(metrics, proc, iteration: int, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= iteration:
            return
        if proc.poll() is not None:
            raise AssertionError(f"training exited early ({proc.returncode}):\n{proc.stdout.read()[-4000:]}")
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("training did not reach the iteration in time")


def test_sigterm_saves_at_step_boundary_and_exits_zero(tmp_path):
    metrics = tmp_path / "m.jsonl"
    proc = _start(1, LONG + [f"checkpoint.save={tmp_path / 'ck'}", f"logging.metrics_file={metrics}"], tmp_path)
    _wait_for_iteration(metrics, proc, 3)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, out[-3000:]
    assert "preemption signal received" in out
    saved = latest_iteration(tmp_path / "ck")
    assert saved is not None and saved >= 3
    assert max(read_metrics(metrics)) == saved  # saved at the boundary of the last step it ran


def test_sigusr1_on_one_rank_stops_all_ranks(tmp_path):
    """SLURM's warning signal reaching a single rank still stops every rank at the same step."""
    metrics = tmp_path / "m.jsonl"
    proc = _start(2, LONG + [f"checkpoint.save={tmp_path / 'ck'}", f"logging.metrics_file={metrics}"], tmp_path)
    _wait_for_iteration(metrics, proc, 3)
    workers = [c for c in psutil.Process(proc.pid).children(recursive=True) if "pretrain.py" in " ".join(c.cmdline())]
    assert len(workers) == 2
    workers[-1].send_signal(signal.SIGUSR1)
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, out[-3000:]
    saved = latest_iteration(tmp_path / "ck")
    assert saved is not None and saved == max(read_metrics(metrics))


def test_signal_during_start_up_is_kept_for_the_loop(tmp_path):
    """A SLURM warning signal that lands while the tool is still importing does not end it (SIGUSR1's default
    action); the training loop's handler gets it once, and the preemption marker names the saved iteration."""
    from megatron_biomed.training import signals as sig

    before = {s: signal.getsignal(s) for s in sig.DEFAULT_SIGNALS}
    try:
        for s in sig.DEFAULT_SIGNALS:
            signal.signal(s, signal.SIG_DFL)
        sig.catch_early()
        os.kill(os.getpid(), signal.SIGUSR1)
        handler = sig.PreemptionHandler()
        assert handler.received == signal.SIGUSR1 and handler.signal_name() == "SIGUSR1"
        handler.restore()
        assert sig.PreemptionHandler().received is None  # handed over once
    finally:
        for s, h in before.items():
            signal.signal(s, h)
    path = sig.write_preempted_marker(tmp_path, 7, "SIGUSR1")
    assert json.loads(path.read_text())["iteration"] == 7 and path.name == sig.PREEMPTED_MARKER
    sig.clear_preempted_marker(tmp_path)
    sig.clear_preempted_marker(tmp_path / "absent")
    assert not path.exists()


def test_nonfinite_loss_is_skipped_and_counted(tmp_path):
    run_pretrain(
        1,
        BASE
        + ["train.train_iters=6", "train.inject_nonfinite_loss_at=[3]", f"logging.metrics_file={tmp_path / 'm.jsonl'}"],
        tmp_path,
    )
    m = read_metrics(tmp_path / "m.jsonl")
    assert sorted(m) == [1, 2, 3, 4, 5, 6]
    assert m[3]["loss"] != m[3]["loss"]  # NaN
    assert m[2]["skipped"] == 0 and m[3]["skipped"] == 1 and m[6]["skipped"] == 1
    # The skipped step changed nothing: the scheduler did not advance either.
    assert m[4]["lr"] == m[3]["lr"]
    assert all(m[i]["loss"] == m[i]["loss"] for i in (1, 2, 4, 5, 6))


def test_too_many_nonfinite_losses_stop_with_a_clear_message(tmp_path):
    proc = run_pretrain(
        1,
        BASE + ["train.train_iters=8", "train.inject_nonfinite_loss_at=[2,3,4]", "train.max_consecutive_nonfinite=3"],
        tmp_path,
        check=False,
    )
    assert proc.returncode == 1
    assert "3 consecutive non-finite losses (last at iteration 4)" in proc.stdout + proc.stderr
