"""Exponential moving average of the model weights (``optimizer.ema_decay``), as LeoYML/BioMamba trains.

After every optimizer step that was taken, ``ema = decay * ema + (1 - decay) * weights``, in fp32 whatever the
training precision. The average lives in a second build of the model chunks (made with the random-number
states put back afterwards, so the run trains as it would without it), so it has the model's own sharded state
dict: a checkpoint stores it next to the model under the ``ema.`` prefix (global
shapes, so it reloads into another layout) and a resume restores it exactly. ``swapped_in`` puts the average
into the model for validation (``optimizer.ema_eval``); ``checkpoint/load.py`` can load it as the weights
(``weights_from="ema"``) for evaluation and export.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch
from megatron.core.tensor_parallel.random import get_cuda_rng_tracker

from megatron_biomed.checkpoint.state import unwrap

# The key under which checkpoints hold the average (checkpoint/state.py ``extra_models``).
EMA_KEY = "ema"


class WeightEMA:
    """The moving average of a model's parameters: ``build()`` makes model chunks of the same shapes (their
    values are set by :meth:`reset` or a resume), kept in fp32 with gradients off."""

    def __init__(self, build: Callable[[], list], decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"optimizer.ema_decay={decay}: expected a value in (0, 1)")
        self.decay = decay
        tracker = get_cuda_rng_tracker().get_states()
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            chunks = build()
        get_cuda_rng_tracker().set_states(tracker)
        self.chunks = [unwrap(c).float().requires_grad_(False) for c in chunks]

    def _pairs(self, model: list):
        for shadow, chunk in zip(self.chunks, model, strict=True):
            params = dict(unwrap(chunk).named_parameters())
            for name, avg in shadow.named_parameters():
                yield avg, params[name]

    @torch.no_grad()
    def reset(self, model: list) -> None:
        """Start the average at the model's current weights (a fresh run, or one initialised from weights)."""
        for avg, param in self._pairs(model):
            avg.copy_(param.detach().float())

    @torch.no_grad()
    def update(self, model: list) -> None:
        """One step of the average, after an optimizer step."""
        for avg, param in self._pairs(model):
            avg.mul_(self.decay).add_(param.detach().float(), alpha=1.0 - self.decay)

    @contextlib.contextmanager
    def swapped_in(self, model: list):
        """The model holds the averaged weights inside the block, its own ones again after it."""
        saved = []
        with torch.no_grad():
            for avg, param in self._pairs(model):
                saved.append(param.detach().clone())
                param.copy_(avg.to(param.dtype))
        try:
            yield
        finally:
            with torch.no_grad():
                for (_, param), value in zip(self._pairs(model), saved, strict=True):
                    param.copy_(value)
