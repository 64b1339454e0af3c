"""Process groups from torchrun/SLURM, megatron-core parallel state, layout checks, CPU compatibility."""

from megatron_biomed.parallel.env import DistEnv, LaunchEnvError, read_dist_env
from megatron_biomed.parallel.layout import LayoutError, layout_problems, validate_layout

__all__ = ["DistEnv", "LaunchEnvError", "LayoutError", "layout_problems", "read_dist_env", "validate_layout"]
