"""megatron-biomed: model-parallel training of biomedical language models on megatron-core."""

__version__ = "0.1.0"
