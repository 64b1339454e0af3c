"""Asynchronous saves (checkpoint.async_save) and failed saves (checkpoint.on_save_error).

One run with background saves every 5 steps is killed (SIGKILL) at the first step boundary after its save of
iteration 10 started, while that save is in flight (training has gone on to step 11). A second run resumes
from the newest complete checkpoint, 5, with background saves, and the save of iteration 15 hits a real
ENOSPC in megatron-core's writer (its first shard goes to /dev/full) with on_save_error=continue. Both runs'
losses and grad norms equal those of the one-process reference run without saves, bit for bit.

A third run, with synchronous saves and on_save_error=stop (the default), stops at the failed save (the same
injected ENOSPC) with the error message and exit 2.
"""

from __future__ import annotations

import pytest
from launch import BASE, read_metrics, run_pretrain

from megatron_biomed.checkpoint import iteration_dir, latest_iteration, verify_checkpoint
from megatron_biomed.checkpoint.faults import ASYNC_KILL_POINT, KILL_IN_SAVE_ENV, SAVE_ERROR_ENV


def _same_steps(got: dict, want: dict, steps) -> None:
    for it in steps:
        assert got[it]["loss"] == want[it]["loss"], (it, got[it]["loss"], want[it]["loss"])
        assert got[it]["grad_norm"] == want[it]["grad_norm"], (it, got[it]["grad_norm"], want[it]["grad_norm"])


@pytest.fixture(scope="module")
def async_runs(initial_weights, tmp_path_factory):
    work = tmp_path_factory.mktemp("async")
    ck = work / "ck"
    run = BASE + [f"checkpoint.init_from={initial_weights}", "checkpoint.async_save=true", "checkpoint.save_interval=5"]
    killed = run_pretrain(
        1,
        run + [f"checkpoint.save={ck}", f"logging.metrics_file={work / 'a.jsonl'}"],
        work,
        check=False,
        env_extra={KILL_IN_SAVE_ENV: f"{ASYNC_KILL_POINT}@10"},
    )
    state_after_kill = {
        "returncode": killed.returncode,
        "latest": latest_iteration(ck),
        "published": sorted(p.name for p in ck.iterdir() if p.name.startswith("iter_")),
    }
    resumed = run_pretrain(
        1,
        run
        + [
            f"checkpoint.load={ck}",
            f"checkpoint.save={ck}",
            "checkpoint.on_save_error=continue",
            f"logging.metrics_file={work / 'b.jsonl'}",
        ],
        work,
        env_extra={SAVE_ERROR_ENV: "15"},
    )
    return {
        "ck": ck,
        "after_kill": state_after_kill,
        "killed": read_metrics(work / "a.jsonl"),
        "resumed": read_metrics(work / "b.jsonl"),
        "resumed_log": resumed.stdout + resumed.stderr,
    }


def test_async_saves_do_not_change_the_losses(async_runs, reference):
    """Training went on while saves were written (the killed run reached step 11 after starting the save of
    10), and every step of both runs equals the reference run's, which saved nothing."""
    assert sorted(async_runs["killed"]) == list(range(1, 12))
    _same_steps(async_runs["killed"], reference, range(1, 12))
    assert sorted(async_runs["resumed"]) == list(range(6, 21))
    _same_steps(async_runs["resumed"], reference, range(6, 21))
    assert "written in the background" in async_runs["resumed_log"]


def test_kill_while_an_async_save_is_in_flight_resumes_from_the_previous_checkpoint(async_runs):
    after = async_runs["after_kill"]
    assert after["returncode"] == -9
    assert after["latest"] == 5 and after["published"] == ["iter_0000005", "iter_0000010.tmp"]
    assert "at iteration 5 (consumed samples 40)" in async_runs["resumed_log"]
    ck = async_runs["ck"]
    assert latest_iteration(ck) == 20
    for it in (5, 10, 20):
        assert verify_checkpoint(iteration_dir(ck, it)) is True
    assert not list(ck.glob("*.tmp"))


def test_failed_background_save_with_continue_keeps_training(async_runs):
    """The save of 15 failed (ENOSPC): logged, its partial directory removed, training went on and the save of
    20 was published; the losses after the failure are the reference's (checked above)."""
    log = async_runs["resumed_log"]
    assert "checkpoint save failed, training goes on (checkpoint.on_save_error=continue)" in log
    assert "saving iteration 15 to" in log and "No space left on device" in log
    assert "iter_0000010 stays the newest complete one" in log
    assert not iteration_dir(async_runs["ck"], 15).exists()


def test_failed_save_with_stop_ends_the_run_keeping_the_previous_checkpoint(tmp_path):
    ck = tmp_path / "ck"
    proc = run_pretrain(
        1,
        BASE + ["train.train_iters=4", "checkpoint.save_interval=2", f"checkpoint.save={ck}"],
        tmp_path,
        check=False,
        env_extra={SAVE_ERROR_ENV: "4"},
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    # (megatron-core's synchronous writer reports the OSError's class only; the background one its message)
    assert "error: saving iteration 4 to" in proc.stderr and "OSError" in proc.stderr
    assert "iter_0000002 stays the newest complete one" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert latest_iteration(ck) == 2 and verify_checkpoint(iteration_dir(ck, 2)) is True
    assert not (ck / "iter_0000004").exists() and not (ck / "iter_0000004.tmp").exists()
