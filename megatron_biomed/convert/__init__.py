"""Hugging Face checkpoints in and out of our dist checkpoints, one adapter per model family.

* :mod:`registry` -- :class:`HFAdapter` (what a family's adapter provides, and how it reads ``config.json``: as
  transformers' config class reads it) and the adapters by name, by HF architecture and by ``model_type``.
* :mod:`gpt2` (``GPT2LMHeadModel``: BioMedLM), :mod:`llama` (``LlamaForCausalLM``: BioLLM-70B) and :mod:`mamba2`
  (``Mamba2ForCausalLM``, state-spaces' ``mamba_ssm`` checkpoints: BioMamba) -- the adapters.
* :mod:`hf_io` -- reading an HF directory's ``config.json`` and its tensors one by one, writing sharded
  safetensors shard by shard.
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
