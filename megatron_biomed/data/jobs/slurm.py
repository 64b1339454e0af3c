"""The Slurm executor: one ``sbatch --array`` per stage, each after the one before it (``--dependency=afterok``).

Slurm is the scheduler; nothing here schedules. A relaunch submits only the tasks without a valid marker for stages
whose inputs are complete (``--array=1,4``), and whole arrays (each task skipping itself if already done) for the
stages after them. ``--kill-on-invalid-dep=yes`` makes Slurm drop the later stages when a task fails or is
cancelled, so nothing waits forever; the task of the next stage would refuse to start anyway (task.py).
Logs: ``<log-dir>/<stage>/<array job id>_<task>.log``.

The model is datatrove's Slurm executor (huggingface/datatrove src/datatrove/executor/slurm.py @ ba1c6f5: an array
per step, ``%workers`` throttle, ``afterok`` on the step before, completed ranks skipped on relaunch). We call sbatch
ourselves instead of using it: its steps pass datatrove ``Document``s and write its own formats (its tokenizer
writes its own files, not megatron-core's ``.bin/.idx``), while byte identity with our single-process tools needs
our own convert/reconcile/indexed code in every task; it pickles the executor (dill) into each job; and its
completion files carry no digest of settings or inputs, so a changed input would not rerun. It would also be a
new dependency for what is here a short module.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from megatron_biomed.data.jobs.plan import Plan, array_spec, plan
from megatron_biomed.data.jobs.spec import PipelineSpec
from megatron_biomed.errors import BiomedError

SUBMISSIONS = "slurm/submissions.jsonl"
PROJECT_ROOT = Path(__file__).resolve().parents[3]


class SlurmError(BiomedError, RuntimeError):
    """sbatch refused a job, or a previous launch of this pipeline is still in the queue."""


@dataclass(frozen=True)
class SlurmOptions:
    partition: str | None = None
    account: str | None = None
    time: str | None = None  # per task, Slurm's format (e.g. 4:00:00)
    cpus_per_task: int = 1
    mem: str | None = None  # per task, e.g. 8G
    array_throttle: int | None = None  # at most this many tasks of one array at once (--array=...%N)
    log_dir: str | None = None  # default <work-dir>/logs
    job_name: str = "preprocess"
    sbatch_args: tuple[str, ...] = ()  # passed through as they are (e.g. --qos=high, --constraint=...)
    python: str = field(default_factory=lambda: sys.executable)


@dataclass
class Submitted:
    stage: str
    job_id: int
    array: str


def log_dir(spec: PipelineSpec, opts: SlurmOptions) -> Path:
    return Path(opts.log_dir) if opts.log_dir else spec.work / "logs"


def write_script(spec: PipelineSpec, stage: str, opts: SlurmOptions) -> Path:
    path = spec.work / "slurm" / f"{stage}.sbatch"
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [opts.python, "-m", "megatron_biomed.data.jobs.task", str(spec.work.resolve()), stage]
    path.write_text(
        "#!/bin/bash\n"
        f"# stage '{stage}' of the preprocessing pipeline in {spec.work.resolve()} (written by "
        "tools/preprocess_pipeline.py; its options are on the sbatch command line)\n"
        "set -euo pipefail\n"
        f"export PYTHONPATH={shlex.quote(str(PROJECT_ROOT))}${{PYTHONPATH:+:$PYTHONPATH}}\n"
        "export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}\n"
        f"exec {' '.join(shlex.quote(c) for c in cmd)} \"$SLURM_ARRAY_TASK_ID\"\n")
    return path


def _sbatch_args(spec: PipelineSpec, stage: str, tasks: list[int], opts: SlurmOptions, after: int | None) -> list[str]:
    logs = log_dir(spec, opts) / stage
    logs.mkdir(parents=True, exist_ok=True)
    array = array_spec(tasks) + (f"%{opts.array_throttle}" if opts.array_throttle else "")
    args = ["sbatch", "--parsable", f"--array={array}", f"--job-name={opts.job_name}-{stage}",
            f"--output={logs}/%A_%a.log", f"--cpus-per-task={opts.cpus_per_task}", "--kill-on-invalid-dep=yes"]
    if after is not None:
        args.append(f"--dependency=afterok:{after}")
    for flag, value in (("--partition", opts.partition), ("--account", opts.account), ("--time", opts.time),
                        ("--mem", opts.mem)):
        if value:
            args.append(f"{flag}={value}")
    return args + list(opts.sbatch_args)


def _active(job_ids: list[int], env: dict | None) -> list[str]:
    if not job_ids:
        return []
    proc = subprocess.run(["squeue", "-h", "-o", "%i %T", "-j", ",".join(map(str, job_ids))], env=env,
                          capture_output=True, text=True, timeout=60)
    return [line for line in proc.stdout.splitlines() if line.strip()]


def last_submission(spec: PipelineSpec) -> list[dict]:
    path = spec.work / SUBMISSIONS
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return json.loads(lines[-1])["jobs"] if lines else []


def submit(spec: PipelineSpec, opts: SlurmOptions, env: dict | None = None, log=print) -> list[Submitted]:
    """Submit every stage that is not complete; returns what was submitted (empty: nothing left to do)."""
    previous = [j["job_id"] for j in last_submission(spec)]
    still = _active(previous, env)
    if still:
        raise SlurmError(f"jobs of the previous launch of {spec.work} are still queued or running ({'; '.join(still)});"
                         " wait for them or scancel them, then relaunch")
    p = plan(spec)
    out: list[Submitted] = []
    after = None
    for sp in p.stages:
        tasks = sp.pending if sp.ready else list(range(sp.tasks))
        if not tasks:
            continue
        script = write_script(spec, sp.name, opts)
        args = _sbatch_args(spec, sp.name, tasks, opts, after)
        # submitted from here, so tasks start in the launch directory (what relative index-cache prefixes mean)
        proc = subprocess.run([*args, str(script)], env=env, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise SlurmError(f"{' '.join(args)} {script} failed ({proc.returncode}): {proc.stderr.strip()}")
        after = int(proc.stdout.strip().split(";")[0])
        out.append(Submitted(sp.name, after, array_spec(tasks)))
        log(f"{sp.name}: job {after} array {array_spec(tasks)}"
            + (f" after {out[-2].job_id}" if len(out) > 1 else ""))
    if out:
        path = spec.work / SUBMISSIONS
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"time": time.time(), "jobs": [s.__dict__ for s in out]}) + "\n")
    return out


def wait(spec: PipelineSpec, jobs: list[Submitted], env: dict | None = None, poll_s: float = 2.0) -> Plan:
    """Until the submitted jobs have left the queue; returns the plan (complete, or naming the unfinished tasks)."""
    ids = [s.job_id for s in jobs]
    while _active(ids, env):
        time.sleep(poll_s)
    return plan(spec)
