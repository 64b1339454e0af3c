"""The job-array pipeline on a real Slurm (fixture ``slurm``): one array per stage chained by afterok; an array task
cancelled with scancel while it runs; the relaunch reruns only that task and the stages after it, and the result is
byte-identical to the single-process tools."""

from __future__ import annotations

import os
import time

from pipeline_corpus import assert_identical

from megatron_biomed.data.jobs import plan, save_spec
from megatron_biomed.data.jobs.markers import read_marker
from megatron_biomed.data.jobs.slurm import SlurmOptions, submit
from megatron_biomed.data.jobs.task import SLOW_ENV


def _wait_running(slurm, task_id: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = task_id.split("_")[0]
        if slurm.state(job).get(task_id) == "RUNNING":
            return
        time.sleep(0.2)
    raise TimeoutError(f"{task_id} did not start: {slurm.state(task_id.split('_')[0])}")


def test_scancel_one_array_task_then_relaunch_reruns_only_it(corpus, slurm, tmp_path):
    ref = corpus.reference(near_dup=False)
    spec = corpus.spec(tmp_path / "w", 3, near_dup=False)
    save_spec(spec)
    opts = SlurmOptions(partition="debug", array_throttle=3, log_dir=str(tmp_path / "logs"), job_name="t19")
    # convert task 1 sleeps before it works, so it is cancelled mid-run, deterministically
    first = submit(spec, opts, env={**slurm.env, SLOW_ENV: "convert:1:120"}, log=lambda m: None)
    assert [s.stage for s in first] == ["convert", "decide", "tokenize", "merge", "publish"]
    convert_job = first[0].job_id
    _wait_running(slurm, f"{convert_job}_1")
    slurm.run("scancel", f"{convert_job}_1")
    slurm.wait(*[s.job_id for s in first], timeout=120)
    p = plan(spec)
    assert p.get("convert").pending == [1] and not p.get("decide").ready  # the later stages never ran
    assert not (spec.work / "out_text_document.bin").exists()

    second = submit(spec, opts, env=slurm.env, log=lambda m: None)
    assert [(s.stage, s.array) for s in second] == [("convert", "1"), ("decide", "0"), ("tokenize", "0-2"),
                                                     ("merge", "0-2"), ("publish", "0")]
    slurm.wait(*[s.job_id for s in second], timeout=180)
    assert plan(spec).complete, plan(spec).describe()
    assert_identical(spec.work / "out_text_document", ref)
    # only the cancelled task reran: the others keep the first launch's markers; one log per task run
    assert [read_marker(spec.work, "convert", k)["slurm_job"] for k in range(3)] == [
        str(convert_job), str(second[0].job_id), str(convert_job)]
    logs = sorted(os.listdir(tmp_path / "logs" / "convert"))
    assert logs == sorted([f"{convert_job}_0.log", f"{convert_job}_1.log", f"{convert_job}_2.log",
                           f"{second[0].job_id}_1.log"])
    # and a third launch has nothing to submit
    assert submit(spec, opts, env=slurm.env, log=lambda m: None) == []
