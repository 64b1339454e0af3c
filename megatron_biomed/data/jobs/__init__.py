"""The preprocessing pipeline as job arrays: one definition (stages.py), run by processes on one machine
(local.py) or as one Slurm job array per stage chained by ``afterok`` dependencies (slurm.py).

Each task is idempotent: it writes under temporary names, publishes atomically, and then writes a completion
marker (markers.py) carrying a digest of the settings, its inputs and the markers of the stage before it, so a
relaunch reruns only the tasks whose marker is missing or stale. ``tools/preprocess_pipeline.py`` is the CLI.
"""

from megatron_biomed.data.jobs.markers import StageNotReady
from megatron_biomed.data.jobs.plan import Plan, plan
from megatron_biomed.data.jobs.spec import IndexCacheSpec, PipelineSpec, load_spec, save_spec
from megatron_biomed.data.jobs.task import run_task

__all__ = ["IndexCacheSpec", "PipelineSpec", "Plan", "StageNotReady", "load_spec", "plan", "run_task", "save_spec"]
