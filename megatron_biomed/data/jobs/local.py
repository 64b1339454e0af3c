"""The local executor: every stage's pending tasks as processes on this machine, stage after stage."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

from megatron_biomed.data.jobs.plan import Plan, plan
from megatron_biomed.data.jobs.spec import PipelineSpec
from megatron_biomed.data.jobs.stages import enabled_stages
from megatron_biomed.data.jobs.task import run_task


def _quiet(msg: str) -> None:
    pass


def run_local(spec: PipelineSpec, workers: int = 1, log=print) -> Plan:
    """Run what is not complete yet; ``workers`` tasks of a stage at once (1: in this process). Raises the first
    task's error; what finished before it keeps its marker, so the next run resumes there."""
    for stage in enabled_stages(spec):
        sp = plan(spec).get(stage.name)
        if not sp.pending:
            continue
        log(f"{stage.name}: {len(sp.pending)} of {sp.tasks} task(s) to run")
        if workers <= 1 or len(sp.pending) == 1:
            for k in sp.pending:
                run_task(spec.work, stage.name, k, log=_quiet)
            continue
        # spawn, not fork: a forked tokenizer pool may deadlock (see data/indexed/preprocess.py)
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(workers, len(sp.pending)), mp_context=ctx) as pool:
            futures = [pool.submit(run_task, str(spec.work), stage.name, k, _quiet) for k in sp.pending]
            for f in futures:
                f.result()
    return plan(spec)
