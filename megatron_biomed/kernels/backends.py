"""Which implementation runs the fused ops: the per-run ``kernels`` choice and its availability.

``kernels`` is one of

* ``"csrc"``  -- our CUDA kernels (``megatron_biomed._C``) on CUDA tensors. Asked for on a machine
  without a GPU (or with CPU tensors) it falls back to ``"torch"``, logged once per op.
* ``"emu"``   -- the same kernels run by the CPU emulator (``megatron_biomed._emu``) on CPU tensors;
  slow, for tests.
* ``"te"``    -- NVIDIA Transformer Engine's modules (module level only, see ``modules.py``).
* ``"torch"`` -- plain PyTorch.
"""

from __future__ import annotations

import importlib
import logging

import torch

KERNEL_CHOICES = ("csrc", "te", "torch", "emu")

logger = logging.getLogger(__name__)


class KernelBackendUnavailable(RuntimeError):
    """The requested ``kernels`` backend cannot run here (what is missing is in the message)."""


def check_choice(kernels: str) -> str:
    if kernels not in KERNEL_CHOICES:
        raise ValueError(f"kernels={kernels!r} is not one of {KERNEL_CHOICES}")
    return kernels


def _import_error(module: str) -> str | None:
    try:
        importlib.import_module(module)
    except ImportError as e:
        return str(e)
    return None


def csrc_unavailable_reason() -> str | None:
    """None if ``megatron_biomed._C`` is importable, else why not."""
    from megatron_biomed.kernels import _csrc

    return _csrc.load_error()


def emu_unavailable_reason() -> str | None:
    err = _import_error("megatron_biomed._emu")
    if err is None:
        return None
    return (
        f"megatron_biomed._emu (the CPU emulator of the csrc kernels) is not built ({err}); "
        "build it with `pip install --no-build-isolation -e .` or `python setup.py build_ext --inplace`"
    )


def te_unavailable_reason() -> str | None:
    err = _import_error("transformer_engine.pytorch")
    if err is None:
        return None
    return (
        f"Transformer Engine is not installed ({err}); install it on a GPU machine with "
        "`pip install --no-build-isolation 'transformer-engine[pytorch]'` or choose kernels='csrc' or 'torch'"
    )


def check_available(kernels: str) -> None:
    """Raise :class:`KernelBackendUnavailable` if ``kernels`` cannot run at all on this machine.

    ``"csrc"`` only fails here when a GPU is present but the extension is missing: without a GPU it
    is allowed and falls back to ``"torch"`` when called.
    """
    check_choice(kernels)
    if kernels == "emu" and (why := emu_unavailable_reason()):
        raise KernelBackendUnavailable(why)
    if kernels == "te" and (why := te_unavailable_reason()):
        raise KernelBackendUnavailable(why)
    if kernels == "csrc" and torch.cuda.is_available() and (why := csrc_unavailable_reason()):
        raise KernelBackendUnavailable(why)


_fallbacks_logged: set[tuple[str, str]] = set()


def _log_once(key: tuple[str, str], msg: str) -> None:
    if key not in _fallbacks_logged:
        _fallbacks_logged.add(key)
        logger.warning(msg)


def resolve(kernels: str, device: torch.device, op: str) -> str:
    """The backend that actually runs ``op`` for tensors on ``device``: "csrc", "emu" or "torch"."""
    check_choice(kernels)
    if kernels == "torch":
        return "torch"
    if kernels == "csrc":
        if device.type != "cuda":
            why = "no CUDA device is available" if not torch.cuda.is_available() else "its inputs are on the CPU"
            _log_once(("csrc", op), f"kernels='csrc': {op} runs on PyTorch because {why}")
            return "torch"
        if why := csrc_unavailable_reason():
            raise KernelBackendUnavailable(why)
        return "csrc"
    if kernels == "emu":
        if device.type != "cpu":
            raise KernelBackendUnavailable(
                f"kernels='emu' runs the kernels on CPU tensors only; {op} got tensors on {device}. "
                "Use kernels='csrc' on a GPU."
            )
        if why := emu_unavailable_reason():
            raise KernelBackendUnavailable(why)
        return "emu"
    raise KernelBackendUnavailable(
        f"kernels='te' is provided by Transformer Engine modules (KernelNorm / KernelDotProductAttention "
        f"or gpt_layer_spec(kernels='te')), not by the functional op {op}"
    )
