"""megatron_biomed.models"""
