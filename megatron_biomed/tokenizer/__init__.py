"""megatron_biomed.tokenizer"""
