"""The SLURM launchers (examples/*.sbatch through examples/_launch.sh) on a real single-node Slurm (fixture
``slurm``, tests/slurm_cluster.py) at tiny size: 2 tasks started by the real ``srun``, CPU and gloo.

- srun's plumbing: SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID per task, MASTER_PORT from the job id, no
  torchrun RANK leaking in, the log where ``--output`` says, ``--kill-on-bad-exit`` ending the other task.
- BioMedLM pretraining under a real time limit: Slurm's own ``--signal=USR1@N`` -> checkpoint, marker, exit 0;
  the operator submits the same command again and it resumes from the saved iteration to the end, with the
  losses of an uninterrupted run.
- BioLLM pretraining -> SFT -> DPO, each starting from the previous checkpoint: pretraining and SFT stopped by
  ``scancel --signal=USR1`` with RESUBMIT_ON_PREEMPT=1, so the job requeues itself and resumes; DPO runs to
  completion.

The sbatch options on the command line override the launchers' #SBATCH lines (one node of 2 tasks, no GPUs).
"""

from __future__ import annotations

import json
import re
import stat
import sys
import time
from datetime import datetime
from pathlib import Path

from launch import CHILD_ENV, ROOT, read_metrics
from slurm_cluster import job_fields

BIOMEDLM = ROOT / "examples" / "biomedlm" / "pretrain_2.7b.sbatch"
BIOLLM = ROOT / "examples" / "biollm" / "pretrain_70b.sbatch"
SFT = ROOT / "examples" / "biollm" / "sft_70b.sbatch"
DPO = ROOT / "examples" / "biollm" / "dpo_70b.sbatch"

# One node, 2 tasks of one CPU, no GPUs: the command line wins over the launchers' #SBATCH lines.
NODE = ["--nodes=1", "--ntasks-per-node=2", "--gpus-per-node=0", "--cpus-per-task=1", "--oversubscribe"]
TASKS = {"GPUS_PER_NODE": "2", "MICRO_BATCH_SIZE": "1"}
# our choice: the recipes' families at the smallest size that still has their shape (GQA for BioLLM).
TINY = ["model.num_layers=2", "model.hidden_size=32", "model.num_attention_heads=4", "model.ffn_hidden_size=64",
        "model.seq_length=32", "model.vocab_size=512", "model.kernels=torch", "train.precision=fp32",
        "train.global_batch_size=4", "train.eval_interval=0", "train.eval_iters=0", "optimizer.lr_warmup_iters=2",
        "model.hidden_dropout=0.0", "model.attention_dropout=0.0", "logging.log_interval=1"]
TINY_LLAMA = TINY + ["model.num_query_groups=2"]
BIOLLM_LAYOUT = {"TP": "1", "PP": "1", "SEQUENCE_PARALLEL": "false"}


def sets(overrides: list[str]) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


def submit(slurm, script: Path, out: Path, *args: str, options: list[str] = (), **env) -> int:
    """``sbatch`` the launcher from the repository root (its SLURM_SUBMIT_DIR) with the test's interpreter."""
    env = {"PYTHON": sys.executable, "PYTHONPATH": str(ROOT), **CHILD_ENV, **TASKS, **env}
    out.mkdir(parents=True, exist_ok=True)  # Slurm does not create --output's directory: the job would fail
    return slurm.sbatch(*NODE, f"--output={out / '%x-%j.out'}", *options, str(script), *args, cwd=ROOT,
                        **{k: str(v) for k, v in env.items()})


def job(slurm, job_id: int) -> dict[str, str]:
    return job_fields(slurm.run("scontrol", "-o", "show", "job", str(job_id)).stdout)


def finished(slurm, job_id: int, timeout: float = 240) -> dict[str, str]:
    slurm.wait(job_id, timeout=timeout)
    return job(slurm, job_id)


def log_of(out: Path, job_id: int) -> str:
    (path,) = out.glob(f"*-{job_id}.out")
    return path.read_text()


def wait_for(predicate, what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def iterations(metrics: Path) -> int:
    return max(read_metrics(metrics), default=0) if metrics.exists() else 0


def requeue_and_release(slurm, job_id: int) -> None:
    """Wait until the job requeued itself, then let it start at once: a requeued job is held for the credential
    lifetime (slurm.conf AuthInfo cred_expire, 120 s by default; measured 121 s here), which on a cluster is
    nothing but here would be most of the test."""
    wait_for(lambda: job(slurm, job_id).get("Restarts") == "1" and job(slurm, job_id)["JobState"] == "PENDING",
             f"job {job_id} to requeue itself")  # fmt: skip
    assert job(slurm, job_id)["Reason"] == "BeginTime"
    # slurmd refuses a credential issued in the same second as the requeue revoked the old one ("Job credential
    # revoked", the job then fails): start it no earlier than 2 s after.
    time.sleep(2)
    slurm.run("scontrol", "update", f"JobId={job_id}", "StartTime=now")


def preempt_requeue_and_finish(slurm, job_id: int, out: Path, metrics: Path, after: int) -> tuple[str, int]:
    """Once the run has logged ``after`` iterations: SIGUSR1 by scancel, then the job must requeue itself (exit 0
    after a save, RESUBMIT_ON_PREEMPT=1) and complete on its second run. Returns its log and the iteration saved."""
    wait_for(lambda: iterations(metrics) >= after, f"the run to reach iteration {after}")
    slurm.run("scancel", "--signal=USR1", str(job_id))
    requeue_and_release(slurm, job_id)
    info = finished(slurm, job_id)
    log = log_of(out, job_id)
    assert (info["JobState"], info["ExitCode"], info["Restarts"]) == ("COMPLETED", "0:0", "1"), log[-3000:]
    stopped = int(re.search(r"stopped for preemption at iteration (\d+)", log).group(1))
    assert after <= stopped
    return log, stopped


def saved_iteration(ck: Path) -> int:
    return int((ck / "latest_checkpointed_iteration.txt").read_text())


# --- srun's plumbing, with a stand-in interpreter (no training) ----------------------------------------------


def test_srun_tasks_port_output_and_kill_on_bad_exit(slurm, tmp_path):
    """Under the real srun each task gets its own SLURM_PROCID / SLURM_LOCALID and the job's SLURM_NTASKS, the
    launcher derives MASTER_PORT from the job id and drops a torchrun RANK from the environment, the log goes
    where --output says; and when one task fails, --kill-on-bad-exit ends the other and the job fails."""
    fake = tmp_path / "python"
    fake.write_text(
        "#!/usr/bin/env bash\n"
        'echo "$SLURM_PROCID $SLURM_NTASKS $SLURM_LOCALID $MASTER_PORT ${RANK:-none} $1"'
        f' > {tmp_path}/task.$SLURM_JOB_ID.$SLURM_PROCID\n'
        'if [[ "${FAIL_TASK:-}" == "$SLURM_PROCID" ]]; then exit 3; fi\n'
        '[[ -z "${FAIL_TASK:-}" ]] || sleep 120\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    out = tmp_path / "logs"
    ok = submit(slurm, BIOMEDLM, out, options=["--time=2"], PYTHON=fake, RANK=7, CHECKPOINT_DIR=tmp_path / "ck",
                TENSORBOARD_DIR=tmp_path / "tb")
    start = time.monotonic()
    bad = submit(slurm, BIOMEDLM, out, options=["--time=2"], PYTHON=fake, FAIL_TASK=1,
                 CHECKPOINT_DIR=tmp_path / "ck2", TENSORBOARD_DIR=tmp_path / "tb2")
    info = finished(slurm, ok, timeout=60)
    assert (info["JobState"], info["ExitCode"]) == ("COMPLETED", "0:0")
    rows = sorted((tmp_path / f"task.{ok}.{r}").read_text().split() for r in (0, 1))
    port = str(10000 + ok % 20000)
    assert rows == [["0", "2", "0", port, "none", "tools/pretrain.py"], ["1", "2", "1", port, "none",
                                                                          "tools/pretrain.py"]]
    assert (out / f"biomedlm-2.7b-{ok}.out").is_file()  # #SBATCH --job-name and our --output=%x-%j.out
    info = finished(slurm, bad, timeout=100)
    log = log_of(out, bad)
    # srun exits with the highest task status: task 0's, ended by SIGTERM (128 + 15) after task 1 failed.
    assert (info["JobState"], info["ExitCode"]) == ("FAILED", "143:0"), log
    assert re.search(r"task 1: Exited with exit code 3", log), log
    assert time.monotonic() - start < 100  # task 0 (sleeping 120 s) did not run to its end
    assert "preempt" not in log


# --- BioMedLM: Slurm's own time-limit signal, the operator resubmits ----------------------------------------


def test_biomedlm_time_limit_signal_saves_and_resubmission_resumes(slurm, tmp_path):
    """``--time=1 --signal=USR1@55``: slurmctld signals the tasks 5 s into the job (or later: it checks time
    limits periodically); the trainer saves, leaves the marker and the job ends COMPLETED, exit 0, well before
    the limit. The same command submitted again resumes from that iteration and finishes the run with the
    losses of the same run uninterrupted (submitted beside the first job, which mostly sleeps)."""
    out, ck, metrics, ref = tmp_path / "logs", tmp_path / "ck", tmp_path / "m.jsonl", tmp_path / "ref"
    iters = 80
    env = dict(TENSORBOARD_DIR=tmp_path / "tb", TOKENIZER="", DATA_CACHE_DIR=tmp_path / "cache", SAVE_INTERVAL=0)
    args = sets(TINY + ["data.mock=true", f"train.train_iters={iters}"])
    # 0.5 s per step: the 80 steps cannot end before the signal (at most ~35 s into the job).
    first = submit(slurm, BIOMEDLM, out, *args, *sets([f"logging.metrics_file={metrics}",
                                                       "train.inject_step_delay_s=0.5"]),
                   options=["--time=1", "--signal=USR1@55"], CHECKPOINT_DIR=ck, **env)  # fmt: skip
    reference = submit(slurm, BIOMEDLM, out, *args, *sets([f"logging.metrics_file={ref / 'm.jsonl'}"]),
                       options=["--time=5"], CHECKPOINT_DIR=ref / "ck", **env)
    info = finished(slurm, first, timeout=90)
    log = log_of(out, first)
    assert (info["JobState"], info["ExitCode"]) == ("COMPLETED", "0:0"), log[-3000:]
    assert "preemption signal received (SIGUSR1)" in log, log[-3000:]
    marker = json.loads((ck / "preempted.json").read_text())
    stopped = marker["iteration"]
    assert (marker["signal"], marker["slurm_job_id"]) == ("SIGUSR1", str(first))
    assert 1 <= stopped < iters and saved_iteration(ck) == stopped == iterations(metrics)
    assert "submit the same command again to resume" in log and "requeueing" not in log
    # How late slurmctld delivered it: the job started at StartTime, the signal was due 5 s later.
    started = datetime.fromisoformat(info["StartTime"])
    got = re.search(r"\[(\d\d:\d\d:\d\d) rank0\] preemption signal received", log).group(1)
    late = (datetime.combine(started.date(), datetime.strptime(got, "%H:%M:%S").time()) - started).total_seconds()
    print(f"\nSIGUSR1 from --time=1 --signal=USR1@55: logged {late:.0f} s into the job (due at 5 s); "
          f"stopped at iteration {stopped}; job ran {info['RunTime']}")
    assert 4 <= late < 60

    # The operator submits the same command again (without the test's slow steps, with a longer limit).
    second = submit(slurm, BIOMEDLM, out, *args, *sets([f"logging.metrics_file={metrics}"]), options=["--time=5"],
                    CHECKPOINT_DIR=ck, **env)
    info = finished(slurm, second)
    log = log_of(out, second)
    assert (info["JobState"], info["ExitCode"]) == ("COMPLETED", "0:0"), log[-3000:]
    assert f"at iteration {stopped} (consumed samples {4 * stopped})" in log
    assert saved_iteration(ck) == iters and not (ck / "preempted.json").exists()
    assert finished(slurm, reference)["ExitCode"] == "0:0"
    got, want = read_metrics(metrics), read_metrics(ref / "m.jsonl")
    assert sorted(got) == sorted(want) == list(range(1, iters + 1))
    assert [got[i]["loss"] for i in got] == [want[i]["loss"] for i in got]  # the same world size: bit for bit


# --- BioLLM: pretraining -> SFT -> DPO; scancel --signal=USR1, the job requeues itself -----------------------


def test_biollm_pretrain_sft_dpo_preempted_requeue_and_resume(slurm, toy, tmp_path):
    out = tmp_path / "logs"
    pre = tmp_path / "pretrain"
    iters = 10
    common = sets(TINY_LLAMA + ["data.mock=true", f"train.train_iters={iters}"])
    env = dict(BIOLLM_LAYOUT, TOKENIZER=toy["tok"], DATA_CACHE_DIR=tmp_path / "cache", SAVE_INTERVAL=0)
    # Slow steps, so that the signal lands mid-run.
    job_id = submit(slurm, BIOLLM, out, *common, *sets([f"logging.metrics_file={pre / 'm.jsonl'}",
                                                        "train.inject_step_delay_s=0.3"]),
                    options=["--time=5"], RESUBMIT_ON_PREEMPT=1, CHECKPOINT_DIR=pre / "ck",
                    TENSORBOARD_DIR=pre / "tb", **env)  # fmt: skip
    log, stopped = preempt_requeue_and_finish(slurm, job_id, out, pre / "m.jsonl", after=3)
    assert stopped < iters
    # One log, both runs (--open-mode=append): the stop, the requeue, the resume, the end.
    assert "requeueing (restart 1; RESUBMIT_ON_PREEMPT=1)" in log
    assert f"at iteration {stopped} (consumed samples {4 * stopped})" in log
    assert saved_iteration(pre / "ck") == iters and not (pre / "ck" / "preempted.json").exists()
    assert sorted(read_metrics(pre / "m.jsonl")) == list(range(1, iters + 1))
    assert "(slurm, gloo)" in log and "world_size 2" in log

    # SFT from the pretrained checkpoint (its model and tokenizer), preempted and requeued like pretraining.
    sft = tmp_path / "sft"
    ft_env = dict(BIOLLM_LAYOUT, TOKENIZER="", VALID_FILE="", GLOBAL_BATCH=4, TRAIN_ITERS=6, SAVE_INTERVAL=0)
    ft_args = sets(["model.kernels=torch", "train.precision=fp32", "task.max_seq_length=32"])
    job_id = submit(slurm, SFT, out, *ft_args, *sets([f"logging.metrics_file={sft / 'm.jsonl'}",
                                                      "train.inject_step_delay_s=0.3"]),
                    options=["--time=5"], RESUBMIT_ON_PREEMPT=1, INIT_FROM=pre / "ck", TRAIN_FILE=toy["sft"],
                    CHECKPOINT_DIR=sft / "ck", TENSORBOARD_DIR=sft / "tb", **ft_env)  # fmt: skip
    log, stopped = preempt_requeue_and_finish(slurm, job_id, out, sft / "m.jsonl", after=2)
    assert stopped < 6 and "resumed from" in log
    assert saved_iteration(sft / "ck") == 6 and sorted(read_metrics(sft / "m.jsonl")) == list(range(1, 7))

    # DPO from the SFT checkpoint, to the end.
    dpo = tmp_path / "dpo"
    job_id = submit(slurm, DPO, out, *ft_args, options=["--time=5"], INIT_FROM=sft / "ck",
                    TRAIN_FILE=toy["pref"], CHECKPOINT_DIR=dpo / "ck", TENSORBOARD_DIR=dpo / "tb",
                    **dict(ft_env, TRAIN_ITERS=3))  # fmt: skip
    info = finished(slurm, job_id)
    log = log_of(out, job_id)
    assert (info["JobState"], info["ExitCode"], info["Restarts"]) == ("COMPLETED", "0:0", "0"), log[-3000:]
    assert saved_iteration(dpo / "ck") == 3 and (dpo / "ck" / "dpo_reference_logps.pt").is_file()
    assert "preempt" not in log
