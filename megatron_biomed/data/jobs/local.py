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
    """Run what is not complete yet; ``workers`` tasks of a stage at once (1: in this process). As an array job,
    every task of a stage runs even when one fails; then the first failure is raised (the later stages do not
    start) and the tasks that finished keep their markers, so the next run reruns only the failed ones."""
    for stage in enabled_stages(spec):
        sp = plan(spec).get(stage.name)
        if not sp.pending:
            continue
        log(f"{stage.name}: {len(sp.pending)} of {sp.tasks} task(s) to run")
        errors: list[tuple[int, BaseException]] = []
        if workers <= 1 or len(sp.pending) == 1:
            for k in sp.pending:
                try:
                    run_task(spec.work, stage.name, k, log=_quiet)
                except Exception as e:  # noqa: BLE001 - reported below, after the other tasks ran
                    errors.append((k, e))
        else:
            # spawn, not fork: a forked tokenizer pool may deadlock (see data/indexed/preprocess.py)
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(min(workers, len(sp.pending)), mp_context=ctx) as pool:
                futures = {k: pool.submit(run_task, str(spec.work), stage.name, k, _quiet) for k in sp.pending}
                for k, f in futures.items():
                    if f.exception() is not None:
                        errors.append((k, f.exception()))
        if errors:
            log(f"{stage.name}: task(s) {', '.join(str(k) for k, _ in errors)} failed; later stages not started")
            raise errors[0][1]
    return plan(spec)
