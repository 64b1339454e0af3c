"""The provider class of each ``kernels`` choice (registered in kernels/registry.py, which documents the interface).

In the manner of megatron-core's ``BackendSpecProvider`` (megatron/core/models/backends.py), whose methods they
have, so megatron-core's ``*_for_backend`` spec helpers accept them:

* ``torch`` -- megatron-core's local modules, exactly as its local spec chooses them; functional ops in PyTorch.
* ``csrc``  -- the local modules with our kernels for the norms and the core attention (KernelNorm,
  KernelDotProductAttention); on tensors outside a GPU the ops fall back to PyTorch, logged once per op.
* ``emu``   -- the same modules, the kernels run by the CPU emulator (``megatron_biomed._emu``; tests).
* ``te``    -- megatron-core's Transformer Engine modules (TENorm, TEDotProductAttention, norms fused into the
  linears); it has no functional ops.
* ``sdpa``  -- the local modules with PyTorch SDPA as the core attention (SdpaDotProductAttention: flash / cuDNN
  backends on a GPU) and PyTorch's norms in our norm module (KernelNorm, which keeps sequence parallelism).
* ``auto``  -- not a provider of its own: resolved at model build to the first of csrc, te, sdpa, torch
  (registry.AUTO_ORDER) that runs here, its own kernels rather than a fallback, and logged with the reasons.

How a GPT layer is assembled from these is models/gpt/specs.py's business.
"""

from __future__ import annotations

import logging

import torch
from megatron.core.extensions.transformer_engine import TENorm
from megatron.core.extensions.transformer_engine_spec_provider import TESpecProvider
from megatron.core.models.backends import LocalSpecProvider
from megatron.core.transformer.spec_utils import ModuleSpec
from megatron.core.transformer.torch_norm import WrappedTorchNorm

from megatron_biomed.kernels import csrc_ops, emu_ops
from megatron_biomed.kernels.csrc_ops import FLASH_HEAD_DIMS
from megatron_biomed.kernels.errors import KernelBackendUnavailable, KernelError
from megatron_biomed.kernels.modules import KernelDotProductAttention, KernelNorm
from megatron_biomed.kernels.registry import KernelProvider, RunFacts, provider_class, resolve_auto
from megatron_biomed.kernels.sdpa import SdpaDotProductAttention

__all__ = [
    "AutoProvider", "CsrcProvider", "EmuProvider", "SdpaProvider", "TorchProvider", "TransformerEngineProvider",
]  # fmt: skip

logger = logging.getLogger(__name__)

_fallbacks_logged: set[tuple[str, str]] = set()


def _log_once(key: tuple[str, str], msg: str) -> None:
    if key not in _fallbacks_logged:
        _fallbacks_logged.add(key)
        logger.warning(msg)


class TorchProvider(KernelProvider):
    """megatron-core's local (pure PyTorch) modules, as its own local spec picks them."""

    name = "torch"
    supports_sequence_parallel = False
    fused_norms = False
    fused_softmax = False
    fused_attention = False
    primitives = None
    megatron_provider = LocalSpecProvider
    summary = "megatron-core's PyTorch modules (the unfused attention)"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return None

    @classmethod
    def op_backend(cls, device: torch.device, op: str) -> type[KernelProvider]:
        return cls

    def norm(self) -> ModuleSpec:
        return ModuleSpec(module=WrappedTorchNorm)

    def final_norm(self) -> ModuleSpec | None:
        return None  # what GPTModel gets with megatron-core's local layer spec


class CsrcProvider(KernelProvider):
    """The local modules with our csrc kernels (``megatron_biomed._C``) for every norm and the core attention."""

    name = "csrc"
    supports_sequence_parallel = True
    fused_norms = True
    fused_softmax = True
    fused_attention = True
    primitives = csrc_ops.PRIMITIVES
    megatron_provider = LocalSpecProvider
    summary = "our CUDA kernels: flash attention and fused norms"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        # Without a GPU the choice still runs (its ops fall back to PyTorch); with one, the extension must be built.
        return csrc_ops.load_error() if torch.cuda.is_available() else None

    @classmethod
    def auto_skip_reason(cls, facts: RunFacts) -> str | None:
        if not torch.cuda.is_available():
            return "no CUDA device (its ops would run the PyTorch fallbacks)"
        if facts.precision == "fp32":
            return "precision fp32: our fp32 kernels are the scalar CUDA-core path (tensor cores take bf16/fp16)"
        if facts.head_dim is not None and facts.head_dim not in FLASH_HEAD_DIMS:
            return f"head_dim {facts.head_dim}: our flash attention takes {FLASH_HEAD_DIMS} (others run unfused)"
        return super().auto_skip_reason(facts)

    @classmethod
    def op_backend(cls, device: torch.device, op: str) -> type[KernelProvider]:
        if device.type != "cuda":
            why = "no CUDA device is available" if not torch.cuda.is_available() else "its inputs are on the CPU"
            _log_once((cls.name, op), f"kernels={cls.name!r}: {op} runs on PyTorch because {why}")
            return TorchProvider
        if why := csrc_ops.load_error():
            raise KernelBackendUnavailable(why)
        return cls

    def norm(self) -> ModuleSpec:
        return ModuleSpec(module=KernelNorm, params={"kernels": self.name})

    def layer_norm(self, rms_norm: bool = False, for_qk: bool = False, has_residual: bool = False) -> ModuleSpec:
        return self.norm()  # KernelNorm reads LayerNorm / RMSNorm from config.normalization

    def core_attention(self) -> ModuleSpec:
        return ModuleSpec(module=KernelDotProductAttention, params={"kernels": self.name})


class EmuProvider(CsrcProvider):
    """The same modules as ``csrc``, their kernels run by the CPU emulator on CPU tensors (slow; tests)."""

    name = "emu"
    primitives = emu_ops
    summary = "our kernels on the CPU emulator"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return emu_ops.load_error()

    @classmethod
    def op_backend(cls, device: torch.device, op: str) -> type[KernelProvider]:
        if device.type != "cpu":
            raise KernelBackendUnavailable(
                f"kernels={cls.name!r} runs the kernels on CPU tensors only; {op} got tensors on {device}. "
                "Use kernels='csrc' on a GPU."
            )
        cls.check_available()
        return cls


class TransformerEngineProvider(KernelProvider):
    """megatron-core's Transformer Engine modules (needs Transformer Engine and a GPU)."""

    name = "te"
    supports_sequence_parallel = True
    fused_norms = True
    fused_softmax = True
    fused_attention = True
    honours_attention_mask = False  # its causal mask type ignores a given mask
    primitives = None
    megatron_provider = TESpecProvider
    summary = "Transformer Engine's fused modules"

    @classmethod
    def auto_skip_reason(cls, facts: RunFacts) -> str | None:
        if why := cls.unavailable_reason():
            return why
        if not torch.cuda.is_available():
            return "no CUDA device (Transformer Engine runs on GPUs only)"
        return super().auto_skip_reason(facts)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        try:
            import transformer_engine.pytorch  # noqa: F401  optional: installed on GPU machines only
        except ImportError as e:
            return (
                f"Transformer Engine is not installed ({e}); install it on a GPU machine with "
                "`pip install --no-build-isolation 'transformer-engine[pytorch]'` or choose kernels='csrc' or 'torch'"
            )
        return None

    @classmethod
    def check_module(cls, module: str) -> None:
        cls.check_available()
        raise KernelError(
            f"{module} runs our kernels; kernels={cls.name!r} uses Transformer Engine's modules instead: build "
            "them from its provider (get_provider('te').norm() / .core_attention(), or gpt_layer_spec(kernels='te'))"
        )

    @classmethod
    def op_backend(cls, device: torch.device, op: str) -> type[KernelProvider]:
        raise KernelBackendUnavailable(
            f"kernels={cls.name!r} is provided by Transformer Engine modules (its provider's specs, e.g. "
            f"gpt_layer_spec(kernels='te')), not by the functional op {op}"
        )

    def norm(self) -> ModuleSpec:
        return ModuleSpec(module=TENorm)


class SdpaProvider(KernelProvider):
    """The local modules with PyTorch SDPA as core attention and PyTorch's norms (F.layer_norm / F.rms_norm) run by
    our norm module, so sequence parallelism works as with ``csrc``."""

    name = "sdpa"
    supports_sequence_parallel = True
    fused_norms = False  # the PyTorch norms, as kernels="torch" runs them
    fused_softmax = True  # the causal mask is implied (is_causal)
    fused_attention = True  # flash / cuDNN / memory-efficient backends: no score matrix saved, K and V not repeated
    primitives = None
    megatron_provider = LocalSpecProvider
    summary = "PyTorch SDPA (flash / cuDNN / memory-efficient backends, picked by PyTorch per call) and PyTorch norms"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if tuple(int(x) for x in torch.__version__.split(".")[:2]) < (2, 5):
            return f"torch {torch.__version__} has no scaled_dot_product_attention(enable_gqa=...) (torch >= 2.5)"
        return None

    @classmethod
    def op_backend(cls, device: torch.device, op: str) -> type[KernelProvider]:
        return TorchProvider  # the norms' functional ops run in PyTorch, by design (not a fallback)

    def norm(self) -> ModuleSpec:
        return ModuleSpec(module=KernelNorm, params={"kernels": self.name})

    def layer_norm(self, rms_norm: bool = False, for_qk: bool = False, has_residual: bool = False) -> ModuleSpec:
        return self.norm()  # KernelNorm reads LayerNorm / RMSNorm from config.normalization

    def core_attention(self) -> ModuleSpec:
        return ModuleSpec(module=SdpaDotProductAttention)


class AutoProvider(KernelProvider):
    """``kernels="auto"``: resolved once, at model build (:meth:`resolve`), to the first choice of
    registry.AUTO_ORDER without a skip reason; the choice and every skip reason are logged.

    Its facts (for the planner and the layout rules, asked before anything is resolved) are those of the choice a
    GPU machine with our extension built resolves to (csrc) -- the machines runs are planned for. Sequence
    parallelism holds for every choice it may pick: under it, choices without it are skipped."""

    name = "auto"
    supports_sequence_parallel = True
    fused_norms = CsrcProvider.fused_norms
    fused_softmax = CsrcProvider.fused_softmax
    fused_attention = CsrcProvider.fused_attention
    primitives = None
    megatron_provider = LocalSpecProvider
    summary = "the fastest choice available here"

    def __init__(self) -> None:
        raise KernelError("kernels='auto' is not built itself: get_provider('auto', facts) builds what it resolves to")

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return None  # some choice always runs

    @classmethod
    def auto_skip_reason(cls, facts: RunFacts) -> str | None:
        return "it is the choice being resolved"

    @classmethod
    def resolve(cls, facts: RunFacts | None = None) -> type[KernelProvider]:
        resolution = resolve_auto(facts)
        logger.info("%s", resolution.describe())
        return provider_class(resolution.choice)

    @classmethod
    def check_module(cls, module: str) -> None:
        raise KernelError(f"{module}: kernels='auto' is resolved at model build; pass the choice it resolved to")

    @classmethod
    def op_backend(cls, device: torch.device, op: str) -> type[KernelProvider]:
        raise KernelError(f"{op}: kernels='auto' is resolved at model build; pass the choice it resolved to")
