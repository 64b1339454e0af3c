"""The Mamba2 family (BioMamba): a pure-PyTorch SSD scan and mixer that drop into megatron-core's HybridModel.

Importing this package imports neither torch nor megatron-core; ``family`` registers ``model.family=mamba2``.
"""
