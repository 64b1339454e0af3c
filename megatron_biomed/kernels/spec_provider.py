"""``model.kernels`` resolved once into the modules a layer spec is built from.

One provider class per choice, in the manner of megatron-core's ``BackendSpecProvider``
(megatron/core/models/backends.py): it has that protocol's methods (``column_parallel_linear``,
``row_parallel_linear``, ``fuse_layernorm_and_linear``, ``column_parallel_layer_norm_linear``,
``layer_norm``, ``core_attention``, ``activation_func``, ``grouped_mlp_modules``), so megatron-core's
``*_for_backend`` spec helpers accept it, plus :meth:`KernelSpecProvider.norm` (a stand-alone norm) and
:meth:`KernelSpecProvider.final_norm` (the block's last norm).

* ``torch`` -- megatron-core's local modules, exactly as its local spec chooses them.
* ``csrc`` / ``emu`` -- the local modules with our kernels for the norms and the core attention
  (KernelNorm, KernelDotProductAttention with ``kernels=`` the choice).
* ``te`` -- megatron-core's Transformer Engine modules (norms fused into the linears).

How a GPT layer is assembled from these is models/layer_specs.py's business.
"""

from __future__ import annotations

from typing import ClassVar

from megatron.core.models.backends import LocalSpecProvider
from megatron.core.transformer.spec_utils import ModuleSpec

from megatron_biomed.kernels.backends import check_available, check_choice

__all__ = [
    "CsrcSpecProvider",
    "EmuSpecProvider",
    "KernelSpecProvider",
    "SPEC_PROVIDERS",
    "TorchSpecProvider",
    "TransformerEngineSpecProvider",
    "get_spec_provider",
    "spec_provider_class",
]


class KernelSpecProvider:
    """The modules of one ``kernels`` choice. Built by :func:`get_spec_provider`, which first checks
    that the choice can run here (a clear error now rather than at the first forward)."""

    kernels: ClassVar[str]
    # True when the modules come from Transformer Engine: our KernelNorm / KernelDotProductAttention
    # built with this choice hand over to Transformer Engine's.
    uses_transformer_engine: ClassVar[bool] = False

    def __init__(self) -> None:
        check_available(self.kernels)
        self._mcore = self._megatron_provider()

    def _megatron_provider(self):
        """megatron-core's provider for the modules this choice leaves as they are."""
        return LocalSpecProvider()

    # --- megatron-core's BackendSpecProvider protocol --------------------------------------------------

    def column_parallel_linear(self) -> type:
        return self._mcore.column_parallel_linear()

    def row_parallel_linear(self) -> type:
        return self._mcore.row_parallel_linear()

    def fuse_layernorm_and_linear(self) -> bool:
        return self._mcore.fuse_layernorm_and_linear()

    def column_parallel_layer_norm_linear(self) -> type | None:
        return self._mcore.column_parallel_layer_norm_linear()

    def layer_norm(self, rms_norm: bool = False, for_qk: bool = False, has_residual: bool = False):
        """The norm inside a layer (input / pre-MLP norm, or the q/k norm with ``for_qk``)."""
        return self._mcore.layer_norm(rms_norm=rms_norm, for_qk=for_qk, has_residual=has_residual)

    def core_attention(self):
        return self._mcore.core_attention()

    def activation_func(self):
        return self._mcore.activation_func()

    def grouped_mlp_modules(self, moe_use_grouped_gemm: bool):
        return self._mcore.grouped_mlp_modules(moe_use_grouped_gemm)

    # --- ours ------------------------------------------------------------------------------------------

    def norm(self) -> ModuleSpec:
        """A norm built as ``spec(config=, hidden_size=, eps=)``; LayerNorm or RMSNorm by
        ``config.normalization``."""
        raise NotImplementedError

    def final_norm(self) -> ModuleSpec | None:
        """The transformer block's final norm; None leaves it to megatron-core's TransformerBlock."""
        return self.norm()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kernels={self.kernels!r})"


class TorchSpecProvider(KernelSpecProvider):
    """megatron-core's local (pure PyTorch) modules, as its own local spec picks them."""

    kernels = "torch"

    def norm(self) -> ModuleSpec:
        from megatron.core.transformer.torch_norm import WrappedTorchNorm

        return ModuleSpec(module=WrappedTorchNorm)

    def final_norm(self) -> ModuleSpec | None:
        return None  # what GPTModel gets with megatron-core's local layer spec


class CsrcSpecProvider(KernelSpecProvider):
    """The local modules with our csrc kernels for every norm and the core attention."""

    kernels = "csrc"

    def norm(self) -> ModuleSpec:
        from megatron_biomed.kernels.modules import KernelNorm

        return ModuleSpec(module=KernelNorm, params={"kernels": self.kernels})

    def layer_norm(self, rms_norm: bool = False, for_qk: bool = False, has_residual: bool = False) -> ModuleSpec:
        return self.norm()  # KernelNorm reads LayerNorm / RMSNorm from config.normalization

    def core_attention(self) -> ModuleSpec:
        from megatron_biomed.kernels.modules import KernelDotProductAttention

        return ModuleSpec(module=KernelDotProductAttention, params={"kernels": self.kernels})


class EmuSpecProvider(CsrcSpecProvider):
    """The same modules as ``csrc``, their kernels run by the CPU emulator (tests)."""

    kernels = "emu"


class TransformerEngineSpecProvider(KernelSpecProvider):
    """megatron-core's Transformer Engine modules (needs Transformer Engine and a GPU)."""

    kernels = "te"
    uses_transformer_engine = True

    def _megatron_provider(self):
        from megatron.core.extensions.transformer_engine_spec_provider import TESpecProvider

        return TESpecProvider()

    def norm(self) -> ModuleSpec:
        from megatron.core.extensions.transformer_engine import TENorm

        return ModuleSpec(module=TENorm)


SPEC_PROVIDERS: dict[str, type[KernelSpecProvider]] = {
    p.kernels: p for p in (CsrcSpecProvider, TransformerEngineSpecProvider, TorchSpecProvider, EmuSpecProvider)
}  # in the order of kernels/backends.py's KERNEL_CHOICES (tests/models/test_spec_provider.py checks)


def spec_provider_class(kernels: str) -> type[KernelSpecProvider]:
    """The provider class of ``kernels`` (ValueError for an unknown choice); checks nothing else."""
    return SPEC_PROVIDERS[check_choice(kernels)]


def get_spec_provider(kernels: str | KernelSpecProvider) -> KernelSpecProvider:
    """The provider for ``kernels`` (a provider is returned as is). Raises ValueError for an unknown choice
    and KernelBackendUnavailable when the choice cannot run on this machine."""
    if isinstance(kernels, KernelSpecProvider):
        return kernels
    return spec_provider_class(kernels)()
