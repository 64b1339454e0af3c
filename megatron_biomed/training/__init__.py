"""megatron_biomed.training"""
