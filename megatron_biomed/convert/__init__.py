"""Hugging Face checkpoints in and out of our dist checkpoints, one adapter per model family.

* :mod:`registry` -- :class:`HFAdapter` (what a family's adapter provides) and the adapters by name, by HF
  architecture and by ``model_type``.
* :mod:`gpt2` (``GPT2LMHeadModel``: BioMedLM) and :mod:`llama` (``LlamaForCausalLM``: BioLLM-70B) -- the adapters.
* :mod:`hf_io` -- reading an HF directory tensor by tensor, writing sharded safetensors shard by shard.
* :mod:`importer` / :mod:`exporter` -- ``import_hf`` and ``export_hf``, what ``tools/convert_hf.py`` runs.
* :mod:`dist_writer` -- the save strategy that writes a dist checkpoint one group of tensors (a layer, an
  embedding) at a time, so an import never holds the model (checkpoint/ publishes it like every save).
"""

from megatron_biomed.convert.registry import (
    ConversionError,
    HFAdapter,
    adapter_for_hf_config,
    adapter_names,
    get_adapter,
    register_adapter,
)

__all__ = [
    "ConversionError",
    "HFAdapter",
    "adapter_for_hf_config",
    "adapter_names",
    "get_adapter",
    "register_adapter",
]
