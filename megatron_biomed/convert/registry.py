"""The adapter seam: one :class:`HFAdapter` per model family; every one is in :data:`ADAPTERS` below, by family.

An adapter translates one family's tensors and config between the Hugging Face layout and our megatron-core
model's *unsharded* (TP = PP = 1) state dict. Sharding over tensor / pipeline ranks is not its business:
dist checkpoints store global tensors, and megatron-core splits them when a layout loads them.
Tensors move one layer at a time (:meth:`HFAdapter.layer_from_hf` / :meth:`HFAdapter.layer_to_hf`), and
those outside the layers one by one where they are plain renames (:meth:`HFAdapter.global_names`), so an
export holds about a layer plus the shard being written, not the model.

A new family's adapter subclasses :class:`HFAdapter` in its own module (convert/<family>.py) and gets one line
in :data:`ADAPTERS`.

``config.json`` is read as transformers reads it: through the family's own config class
(:meth:`HFAdapter.read_config`), so whatever transformers writes (its encoding of non-finite floats, fields it
leaves out because they have class defaults, its newer names such as ``rope_parameters``) means to us what it
means to transformers. transformers is a test requirement, not a runtime one (requirements-test.txt): without
it the file is read as plain JSON and completed with the adapter's copy of the class defaults
(:attr:`HFAdapter.config_defaults`, held to the installed transformers by tests/convert/test_hf_configs.py).
"""

from __future__ import annotations

from typing import Callable, ClassVar

import torch

from megatron_biomed.config.model import ModelConfig
from megatron_biomed.errors import BiomedError
from megatron_biomed.registry import Registry

__all__ = [
    "ADAPTERS",
    "ConversionError",
    "HFAdapter",
    "adapter_for_hf_config",
    "adapter_names",
    "get_adapter",
    "optional_transformers",
    "read_checkpoint_config",
    "register_adapter",
]

# Our (TP = PP = 1) state-dict names of the tensors every GPTModel family has outside its layers.
WORD_EMBEDDINGS = "embedding.word_embeddings.weight"
OUTPUT_LAYER = "output_layer.weight"
LAYER_PREFIX = "decoder.layers.{}."

Reader = Callable[[str], torch.Tensor]


class ConversionError(BiomedError, ValueError):
    """A checkpoint or config cannot be converted (the message names the file, field or tensor)."""


def optional_transformers():
    """The transformers module, or None where it is not installed (it is not a runtime requirement)."""
    try:
        import transformers  # optional: requirements-test.txt only; without it config.json is read as plain JSON
    except ImportError:
        return None
    return transformers


class HFAdapter:
    """What a model family's Hugging Face adapter provides. Names on our side are the TP = PP = 1 state-dict
    names; layer tensors are named by their suffix after ``decoder.layers.<i>.``."""

    family: ClassVar[str]
    # transformers class names in config.json's "architectures", and its "model_type".
    architectures: ClassVar[tuple[str, ...]]
    model_type: ClassVar[str]
    # The family's transformers config class, by name (transformers is optional: imported when reading).
    config_class: ClassVar[str]
    # That class's defaults (pinned transformers) of every field model_config_from reads: what a config.json
    # that leaves a field out means when transformers is not installed.
    config_defaults: ClassVar[dict]
    # Entries of an HF state dict that are buffers, not weights (skipped on import).
    ignored_hf_names: ClassVar[tuple[str, ...]] = ()
    # ModelConfig architecture fields that this family's weights do not fix (an import keeps the preset's).
    training_choices: ClassVar[tuple[str, ...]] = ()

    def read_config(self, hf: dict, where: str = "config.json") -> dict:
        """``hf`` (a ``config.json`` mapping) as transformers reads it: built into :attr:`config_class` and
        back to a dict, so every field the class has is there, with transformers' defaults and its
        normalisations; without transformers, ``hf`` over :attr:`config_defaults`. ConversionError naming
        ``where`` when transformers refuses the config."""
        transformers = optional_transformers()
        if transformers is None:
            return self.config_defaults | hf
        cls = getattr(transformers, self.config_class)
        try:
            config = cls.from_dict(dict(hf))
        except Exception as e:  # its validation raises huggingface_hub's StrictDataclassError, not only ValueError
            raise ConversionError(f"{where}: transformers' {self.config_class} refuses it: {e}") from e
        return config.to_dict()

    def model_config(self, hf: dict, where: str = "config.json") -> ModelConfig:
        """Our ModelConfig for an HF ``config.json`` mapping, read as transformers reads it
        (:meth:`read_config`); ConversionError naming ``where`` and the field for anything we cannot
        reproduce exactly."""
        return self.model_config_from(self.read_config(hf, where), where)

    def model_config_from(self, hf: dict, where: str) -> ModelConfig:
        """:meth:`model_config` of a complete config (every field of :attr:`config_defaults` present)."""
        raise NotImplementedError

    def hf_config(self, m: ModelConfig, special_tokens: dict, dtype: str) -> dict:
        """``config.json`` for ``m`` (``special_tokens``: bos/eos/pad token ids; ``dtype``: "float32", ...)."""
        raise NotImplementedError

    def global_names(self, m: ModelConfig) -> dict[str, str] | None:
        """Our tensors outside the layers (embeddings, final norm, an untied output layer) -> their HF names,
        when these are plain renames (then an export moves them one by one); None when the adapter needs
        :meth:`globals_from_hf` / :meth:`globals_to_hf` of its own."""
        return None

    def globals_from_hf(self, m: ModelConfig, read: Reader) -> dict[str, torch.Tensor]:
        """Our tensors outside the layers, unpadded (default: :meth:`global_names` read one by one)."""
        names = self._names(m)
        return {ours: read(theirs) for ours, theirs in names.items()}

    def globals_to_hf(self, m: ModelConfig, ours: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """HF tensors for our non-layer tensors (vocabulary padding already removed)."""
        return {theirs: ours[mine] for mine, theirs in self._names(m).items()}

    def _names(self, m: ModelConfig) -> dict[str, str]:
        names = self.global_names(m)
        if names is None:
            raise NotImplementedError(f"{type(self).__name__} gives neither global_names nor globals_*_hf")
        return names

    def from_native_config(self, config: dict, where: str = "config.json") -> tuple[dict, int] | None:
        """A ``config.json`` written by the family's own library rather than transformers (e.g. mamba_ssm's):
        (the equivalent HF config, the tokenizer's vocabulary before the checkpoint's row padding); None when
        ``config`` is not in that format (the default)."""
        return None

    def layer_from_hf(self, m: ModelConfig, i: int, read: Reader) -> dict[str, torch.Tensor]:
        """Layer ``i``'s tensors by our suffix name, read from the HF names of that layer."""
        raise NotImplementedError

    def layer_to_hf(self, m: ModelConfig, i: int, ours: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """HF tensors of layer ``i`` from our suffix-named tensors."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(family={self.family!r})"


# family -> "module:attribute" of its adapter (an HFAdapter instance), imported when first asked for.
ADAPTERS: Registry[HFAdapter] = Registry(
    "Hugging Face adapter",
    {
        "gpt2": "megatron_biomed.convert.gpt2:ADAPTER",
        "llama": "megatron_biomed.convert.llama:ADAPTER",
        "mamba2": "megatron_biomed.convert.mamba2:ADAPTER",
    },
    error=ConversionError,
    plural="adapters",
)


def register_adapter(adapter: HFAdapter, *, replace: bool = False) -> HFAdapter:
    """Make ``adapter`` the converter of its family (tests, plugins; a taken family unless ``replace``)."""
    return ADAPTERS.register(adapter.family, adapter, replace=replace)


def get_adapter(family: str) -> HFAdapter:
    """The adapter of model family ``family``."""
    if family not in ADAPTERS:
        raise ConversionError(
            f"model.family={family!r} has no Hugging Face adapter; adapters exist for: {', '.join(ADAPTERS.names())}"
        )
    return ADAPTERS.get(family)


def adapter_names() -> tuple[str, ...]:
    return ADAPTERS.names()


def adapter_for_hf_config(hf: dict, where: str = "config.json") -> HFAdapter:
    """The adapter for an HF ``config.json`` (by its "architectures", else its "model_type")."""
    adapters = [adapter for _, adapter in ADAPTERS.items()]
    archs = hf.get("architectures") or []
    for adapter in adapters:
        if any(a in adapter.architectures for a in archs):
            return adapter
    for adapter in adapters:
        if hf.get("model_type") == adapter.model_type:
            return adapter
    known = ", ".join(a for ad in adapters for a in ad.architectures)
    raise ConversionError(
        f"{where}: architectures={archs} / model_type={hf.get('model_type')!r} has no adapter (known: {known})"
    )


def read_checkpoint_config(config: dict, where: str = "config.json") -> tuple[dict, int, str | None]:
    """An HF ``config.json`` as found in a checkpoint directory: (its HF config, the vocabulary size, the family
    whose native format it was in, or None for a transformers config). A config without "architectures" and
    "model_type" is offered to each adapter's :meth:`HFAdapter.from_native_config`."""
    if not config.get("architectures") and "model_type" not in config:
        for _, adapter in ADAPTERS.items():
            native = adapter.from_native_config(config, where)
            if native is not None:
                return native[0], native[1], adapter.family
    # The vocabulary as transformers reads it (its class default where config.json has none).
    vocab = adapter_for_hf_config(config, where).read_config(config, where)["vocab_size"]
    return config, vocab, None


def require(cond: bool, where: str, message: str) -> None:
    """ConversionError ``where: message`` unless ``cond``."""
    if not cond:
        raise ConversionError(f"{where}: {message}")
