"""The GPT decoder families: ``gpt2`` (BioMedLM) and ``llama`` (BioLLM-70B), megatron-core GPTModels told apart
by their ModelConfig fields. ``family`` builds them, ``specs`` decides how a layer is built on a kernels
provider, ``counts`` gives their parameters and FLOPs."""
