"""Python face of the csrc kernels, with PyTorch fallbacks.

Pick the implementation per run with ``kernels``: ``"csrc"`` (our CUDA ops; on a machine without a
GPU it falls back to PyTorch, logged once), ``"emu"`` (the same kernels on the CPU emulator, for
tests), ``"te"`` (Transformer Engine modules) or ``"torch"``.

* functional ops with autograd: :func:`layer_norm`, :func:`rms_norm`,
  :func:`scaled_masked_softmax`, :func:`scaled_causal_softmax`, :func:`flash_attention`;
* megatron-core modules (imported lazily, they pull in megatron.core): :class:`KernelNorm`,
  :class:`KernelDotProductAttention`; layer specs in ``megatron_biomed.models.layer_specs``.
"""

from megatron_biomed.kernels.backends import (
    KERNEL_CHOICES,
    KernelBackendUnavailable,
    check_available,
    resolve,
)
from megatron_biomed.kernels.functions import (
    causal_mask,
    flash_attention,
    layer_norm,
    rms_norm,
    scaled_causal_softmax,
    scaled_masked_softmax,
)

__all__ = [
    "KERNEL_CHOICES",
    "KernelBackendUnavailable",
    "KernelDotProductAttention",
    "KernelNorm",
    "causal_mask",
    "check_available",
    "flash_attention",
    "layer_norm",
    "resolve",
    "rms_norm",
    "scaled_causal_softmax",
    "scaled_masked_softmax",
]


def __getattr__(name: str):
    if name in ("KernelNorm", "KernelDotProductAttention"):
        from megatron_biomed.kernels import modules

        return getattr(modules, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
