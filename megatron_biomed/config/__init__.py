"""megatron_biomed.config"""
