"""megatron_biomed.inference"""
