"""Every ``model.kernels`` choice in one table, and :class:`KernelProvider`, what each choice's provider answers.

A choice is decided by its provider class (kernels/providers.py) and nowhere else: whether it can run here
(:meth:`KernelProvider.unavailable_reason`), whether ``kernels="auto"`` may pick it for a run
(:meth:`KernelProvider.auto_skip_reason`), which backend runs a functional op for tensors on a device
(:meth:`KernelProvider.op_backend`), whether its norms support sequence parallelism and which of its norms,
softmax and attention are fused (class attributes, for the layout rules and the planner), and the modules a
layer spec is built from (the instance methods, megatron-core's ``BackendSpecProvider`` protocol).

``"auto"`` is resolved once, at model build (:func:`get_provider` with the run's :class:`RunFacts`), to the first
choice of :data:`AUTO_ORDER` whose provider has no reason to be skipped -- our csrc kernels where the extension is
built and a GPU is present, else Transformer Engine, else PyTorch SDPA -- and the choice is logged with the reason
for each one skipped. It never fails because an optional build was skipped.

The table's order is the order config validation lists the choices in. This module imports neither torch nor
megatron-core (config validation reads the names); asking for a provider class imports kernels/providers.py.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from megatron_biomed.kernels.errors import KernelBackendUnavailable, UnknownKernelsError
from megatron_biomed.registry import Registry

if TYPE_CHECKING:
    import torch
    from megatron.core.transformer.spec_utils import ModuleSpec

__all__ = [
    "AUTO_ORDER", "KERNEL_PROVIDERS", "KernelProvider", "Resolution", "RunFacts", "get_provider", "provider_class",
    "resolve_auto",
]  # fmt: skip

logger = logging.getLogger(__name__)

# kernels="auto": the choices it tries, fastest first; the first one without a skip reason is taken.
AUTO_ORDER = ("csrc", "te", "sdpa", "torch")


@dataclass(frozen=True)
class RunFacts:
    """What a run asks of its kernels, for resolving ``kernels="auto"`` (models/common.py ``run_facts`` reads them
    from the experiment config). The defaults ask nothing special."""

    precision: str = "fp32"  # TrainingConfig.precision: "fp32", "bf16" or "fp16"
    head_dim: int | None = None  # the attention head dim (None: not known)
    sequence_parallel: bool = False


class KernelProvider:
    """The implementation of the norms, softmax and core attention for one ``kernels`` choice.

    Facts and availability are class attributes and class methods: they are asked without building anything,
    even where the choice cannot run (the planner asks about ``te`` on a laptop). An instance, built by
    :func:`get_provider` after checking that the choice can run here, gives the modules of a layer spec."""

    name: ClassVar[str]
    # Its norms keep megatron-core's sequence-parallel contract (parameters marked, gradients all-reduced
    # across TP); megatron-core's own torch norm refuses sequence parallelism.
    supports_sequence_parallel: ClassVar[bool]
    # Norms save only their input and fp32 statistics for backward (the PyTorch RMSNorm also saves its output).
    fused_norms: ClassVar[bool]
    # The attention softmax is fused: the causal mask is implied, not materialised.
    fused_softmax: ClassVar[bool]
    # Flash attention: no score or probability matrix saved, K and V not repeated per head, a log-sum-exp saved.
    fused_attention: ClassVar[bool]
    # A given attention mask is applied as given whatever the layer's mask type (SFT packing's document masks,
    # scoring's shared prompts). Transformer Engine's causal type ignores a given mask.
    honours_attention_mask: ClassVar[bool] = True
    # What runs the functional ops (kernels/functions.py) when this provider is their backend: an object with
    # the primitives of kernels/csrc_ops.py's OP_NAMES; None runs them in PyTorch.
    primitives: ClassVar[Any]
    # megatron-core's BackendSpecProvider class, for the modules this choice leaves as megatron-core picks them.
    megatron_provider: ClassVar[type]
    # What this choice runs, in a few words (the log line of kernels="auto" names it).
    summary: ClassVar[str] = ""

    def __init__(self) -> None:
        self.check_available()  # a clear error now rather than at the first forward
        self._mcore = self.megatron_provider()

    # --- availability and the functional ops -------------------------------------------------------------

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """None if this choice can run on this machine, else why not and what to install or build."""
        raise NotImplementedError

    @classmethod
    def auto_skip_reason(cls, facts: RunFacts) -> str | None:
        """None if ``kernels="auto"`` may pick this choice for a run with ``facts``, else why it is skipped
        (it cannot run here, or it would run a slower fallback than the next choice of :data:`AUTO_ORDER`)."""
        if why := cls.unavailable_reason():
            return why
        if facts.sequence_parallel and not cls.supports_sequence_parallel:
            return "its norms do not support sequence parallelism"
        return None

    @classmethod
    def resolve(cls, facts: RunFacts | None = None) -> type[KernelProvider]:
        """The provider class that runs this choice for a run with ``facts``: the class itself (``"auto"``
        picks another)."""
        return cls

    @classmethod
    def check_available(cls) -> None:
        """Raise :class:`KernelBackendUnavailable` if this choice cannot run on this machine."""
        if why := cls.unavailable_reason():
            raise KernelBackendUnavailable(why)

    @classmethod
    def check_module(cls, module: str) -> None:
        """Raise unless our module ``module`` (KernelNorm, KernelDotProductAttention) can run on this choice."""
        cls.check_available()

    @classmethod
    def op_backend(cls, device: torch.device, op: str) -> type[KernelProvider]:
        """The provider whose :attr:`primitives` run the functional op ``op`` for tensors on ``device``: this
        one, or the one it falls back to. Raises :class:`KernelBackendUnavailable` if none can."""
        raise NotImplementedError

    # --- megatron-core's BackendSpecProvider protocol ----------------------------------------------------

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

    # --- ours --------------------------------------------------------------------------------------------

    def norm(self) -> ModuleSpec:
        """A norm built as ``spec(config=, hidden_size=, eps=)``; LayerNorm or RMSNorm by
        ``config.normalization``."""
        raise NotImplementedError

    def final_norm(self) -> ModuleSpec | None:
        """The transformer block's final norm; None leaves it to megatron-core's TransformerBlock."""
        return self.norm()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kernels={self.name!r})"


KERNEL_PROVIDERS: Registry[type[KernelProvider]] = Registry(
    "kernels choice",
    {
        "auto": "megatron_biomed.kernels.providers:AutoProvider",
        "csrc": "megatron_biomed.kernels.providers:CsrcProvider",
        "te": "megatron_biomed.kernels.providers:TransformerEngineProvider",
        "sdpa": "megatron_biomed.kernels.providers:SdpaProvider",
        "torch": "megatron_biomed.kernels.providers:TorchProvider",
        "emu": "megatron_biomed.kernels.providers:EmuProvider",
    },
    error=UnknownKernelsError,
    plural="kernels choices",
    hint="set model.kernels to one of them",
)


def provider_class(kernels: str) -> type[KernelProvider]:
    """The provider class of the choice ``kernels``; :class:`UnknownKernelsError` (a ValueError) for a name
    not in the table. Checks nothing else: the class answers even where the choice cannot run."""
    if kernels not in KERNEL_PROVIDERS:
        raise UnknownKernelsError(f"kernels={kernels!r} is not one of {KERNEL_PROVIDERS.names()}")
    return KERNEL_PROVIDERS.get(kernels)


def get_provider(kernels: str | KernelProvider, facts: RunFacts | None = None) -> KernelProvider:
    """The provider for ``kernels`` (a provider is returned as is); ``"auto"`` is resolved here for a run with
    ``facts`` (default :class:`RunFacts`) and the choice logged. Raises :class:`UnknownKernelsError` for an
    unknown choice and :class:`KernelBackendUnavailable` when the choice cannot run on this machine."""
    if isinstance(kernels, KernelProvider):
        return kernels
    return provider_class(kernels).resolve(facts)()


@dataclass(frozen=True)
class Resolution:
    """What ``kernels="auto"`` resolved to on this machine for one run, and why."""

    choice: str
    reason: str  # what the choice runs
    skipped: tuple[tuple[str, str], ...]  # (choice, why not) of each one tried before it

    def describe(self) -> str:
        """The log line: ``kernels=auto -> sdpa (what it runs; skipped csrc: why; te: why)``."""
        skipped = "; ".join(f"{name}: {why}" for name, why in self.skipped)
        return f"kernels=auto -> {self.choice} ({self.reason}" + (f"; skipped {skipped})" if skipped else ")")


def resolve_auto(facts: RunFacts | None = None) -> Resolution:
    """The first choice of :data:`AUTO_ORDER` that ``kernels="auto"`` may pick for a run with ``facts``, with the
    reason each earlier one was skipped. The last choice (``torch``) always runs."""
    facts = facts or RunFacts()
    skipped = []
    for name in AUTO_ORDER:
        cls = provider_class(name)
        if (why := cls.auto_skip_reason(facts)) is None:
            return Resolution(name, cls.summary, tuple(skipped))
        skipped.append((name, why))
    raise KernelBackendUnavailable(  # unreachable with the torch choice last; kept for a changed AUTO_ORDER
        "kernels='auto': no choice can run here: " + "; ".join(f"{n}: {w}" for n, w in skipped)
    )
