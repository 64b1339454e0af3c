"""Fit and speed at scale: memory per GPU and step time of parallel layouts, a search over layouts, and the
published runs the estimates are held against. Imports neither torch nor megatron-core (``measure`` does)."""

from megatron_biomed.planning.hardware import GPUS, Cluster, get_gpu
from megatron_biomed.planning.layouts import Layout, layout_from_config
from megatron_biomed.planning.memory import MemoryEstimate, estimate_memory
from megatron_biomed.planning.search import Plan, evaluate, format_table, search
from megatron_biomed.planning.timing import StepTime, estimate_step_time

__all__ = [
    "GPUS", "Cluster", "Layout", "MemoryEstimate", "Plan", "StepTime", "estimate_memory", "estimate_step_time",
    "evaluate", "format_table", "get_gpu", "layout_from_config", "search",
]  # fmt: skip
