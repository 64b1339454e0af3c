"""megatron_biomed.data"""
