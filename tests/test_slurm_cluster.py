"""The test Slurm is a real scheduler: a job array runs its tasks with Slurm's own variables, and srun inside a job
starts the tasks the job asked for."""

from __future__ import annotations


def test_job_array_and_srun_on_the_real_scheduler(slurm, tmp_path):
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/bash\nsrun bash -c 'echo $SLURM_ARRAY_TASK_ID $SLURM_PROCID $SLURM_NTASKS' | sort\n")
    job = slurm.sbatch("--array=0-2", "--ntasks=2", f"--output={tmp_path}/o-%a.out", str(script))
    slurm.wait(job)
    assert set(slurm.state(job).values()) == {"COMPLETED"}
    for task in range(3):
        assert (tmp_path / f"o-{task}.out").read_text().split("\n")[:2] == [f"{task} 0 2", f"{task} 1 2"]
