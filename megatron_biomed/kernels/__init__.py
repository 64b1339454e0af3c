"""megatron_biomed.kernels"""
