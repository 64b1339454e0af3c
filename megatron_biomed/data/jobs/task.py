"""One array task: ``python -m megatron_biomed.data.jobs.task WORK_DIR STAGE TASK`` (what every sbatch script runs).

Refuses to start, naming the missing tasks, unless every task of the stage before it has a valid completion marker
(so a failed or cancelled task's partial output is never read); exits at once when its own marker is valid; else
runs the stage function and writes its marker last. ``MEGATRON_BIOMED_JOBS_SLOW=stage:task:seconds`` makes that one
task sleep first (tests and drills use it to cancel a task while it runs).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

from megatron_biomed.data.jobs.markers import StageNotReady, write_marker
from megatron_biomed.data.jobs.plan import array_spec, marker_dir, plan
from megatron_biomed.data.jobs.spec import load_spec

SLOW_ENV = "MEGATRON_BIOMED_JOBS_SLOW"


def _slow(stage: str, task: int) -> None:
    spec = os.environ.get(SLOW_ENV, "")
    if spec:
        name, k, seconds = spec.split(":")
        if name == stage and int(k) == task:
            time.sleep(float(seconds))


def run_task(work_dir: str | Path, stage: str, task: int, log=print) -> dict | None:
    """Run one task; returns its marker info, or None when it was already complete."""
    spec = load_spec(work_dir)
    p = plan(spec)
    sp = p.get(stage)
    if not 0 <= task < sp.tasks:
        raise ValueError(f"stage {stage} has tasks 0..{sp.tasks - 1}, not {task}")
    if not sp.ready:
        prev = p.previous(stage)
        raise StageNotReady(
            f"stage '{stage}' task {task} cannot start: stage '{prev.name}' task(s) {array_spec(prev.pending)} "
            f"have no valid completion marker in {marker_dir(spec, prev.name)} (failed, cancelled, or not run; "
            "their partial output is never used). Rerun tools/preprocess_pipeline.py: it reruns only those tasks.")
    if task not in sp.pending:
        log(f"{stage} task {task}: already complete (marker digest matches); nothing to do")
        return None
    _slow(stage, task)
    log(f"{stage} task {task}/{sp.tasks}: running")
    t0 = time.time()
    info = sp.stage.function()(spec, task) or {}
    info["seconds"] = round(time.time() - t0, 3)
    info["max_rss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    info["slurm_job"] = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID")
    info["host"] = os.uname().nodename
    write_marker(spec.work, stage, task, sp.digests[task], info)
    log(f"{stage} task {task}: done in {info['seconds']:.1f}s")
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="run one task of a preprocessing pipeline")
    ap.add_argument("work_dir")
    ap.add_argument("stage")
    ap.add_argument("task", type=int)
    args = ap.parse_args(argv)
    try:
        run_task(args.work_dir, args.stage, args.task, log=lambda m: print(m, flush=True))
    except StageNotReady as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
