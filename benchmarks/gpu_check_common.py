"""What the GPU check's runner (gpu_check.py) and its steps (gpu_check_kernels.py, gpu_check_training.py) share."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class Skip(Exception):
    """A step that cannot run here, and why (recorded as ``skipped``)."""


class StepFailed(Exception):
    """A step that ran and found a failure; ``result`` still goes into the JSON."""

    def __init__(self, reason: str, result: dict):
        super().__init__(reason)
        self.result = result
