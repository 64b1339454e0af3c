"""The errors of the kernels seam: a ``kernels`` choice no provider is registered for, or one that cannot run here.

Callers catch :class:`KernelError` (or :class:`megatron_biomed.errors.BiomedError`); each subclass keeps the
builtin base it had before the seam had one (ValueError, RuntimeError).
"""

from __future__ import annotations

from megatron_biomed.errors import BiomedError


class KernelError(BiomedError):
    """Base of every error of the kernel providers (megatron_biomed/kernels/)."""


class UnknownKernelsError(KernelError, ValueError):
    """``kernels`` is not a registered choice (kernels/registry.py); the message lists the registered ones."""


class KernelBackendUnavailable(KernelError, RuntimeError):
    """The requested ``kernels`` backend cannot run here (what is missing is in the message)."""
