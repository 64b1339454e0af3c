"""megatron_biomed.parallel"""
