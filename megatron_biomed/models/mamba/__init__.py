"""The Mamba2 family (BioMamba): a pure-PyTorch SSD scan and mixer that drop into megatron-core's HybridModel.
``family`` builds it (registered in models/registry.py), ``counts`` gives its parameters and FLOPs."""
