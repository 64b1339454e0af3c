"""Counting device->host reads in tests (the step loop's, generation's)."""

from __future__ import annotations

import threading
import traceback
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

import megatron_biomed

ROOT = str(Path(megatron_biomed.__file__).resolve().parent)


def _site() -> str:
    """Innermost frame of our package or of megatron-core: ``file:function``."""
    for frame in reversed(traceback.extract_stack()[:-2]):
        path = frame.filename
        if path.endswith("parallel/cpu.py"):  # the CPU compatibility mode passes every call through
            continue
        if path.startswith(ROOT) or "/megatron/core/" in path:
            return f"{Path(path).name}:{frame.name}"
    return "other"


class HostSyncs(TorchDispatchMode):
    """Counts device->host reads: every ``aten._local_scalar_dense`` (``.item()``, ``float(t)``, ``bool(t)``,
    ``if t:``) at the dispatcher, and ``Tensor.tolist`` / ``.cpu()`` / ``.numpy()`` calls (host-side C++ on CPU,
    so counted at the Python method), each with the site that made it."""

    def __init__(self):
        super().__init__()
        self.events: list[tuple[str, str]] = []  # (phase, site)
        self.phase = "setup"
        self._patched = {}
        self._inside = 0  # in a counted method: its own scalar reads are that one read

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default and not self._inside:
            self.events.append((self.phase, _site()))
        return func(*args, **(kwargs or {}))

    def __enter__(self):
        for name in ("tolist", "cpu", "numpy"):
            original = getattr(torch.Tensor, name)
            self._patched[name] = original

            def counted(t, *a, _original=original, **k):
                if threading.current_thread() is not threading.main_thread():
                    return _original(t, *a, **k)
                if not self._inside:
                    self.events.append((self.phase, _site()))
                self._inside += 1
                try:
                    return _original(t, *a, **k)
                finally:
                    self._inside -= 1

            setattr(torch.Tensor, name, counted)
        return super().__enter__()

    def __exit__(self, *exc):
        for name, original in self._patched.items():
            setattr(torch.Tensor, name, original)
        return super().__exit__(*exc)
