"""Inference: greedy generation from megatron-core checkpoints."""
