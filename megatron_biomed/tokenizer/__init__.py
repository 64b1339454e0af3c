"""Tokenizers for megatron-biomed: load, train, extend and compare byte-level BPE vocabularies.

``load_tokenizer(path)`` is the one entry point the rest of the library uses; it returns a
:class:`BioTokenizer` over a standard Hugging Face tokenizer directory (``tokenizer.json``).
"""

from megatron_biomed.tokenizer.bio_tokenizer import (
    EOD_TOKEN,
    BioTokenizer,
    load_tokenizer,
)
from megatron_biomed.tokenizer.train import TokenizerTrainConfig, train_bpe_tokenizer

__all__ = [
    "EOD_TOKEN",
    "BioTokenizer",
    "TokenizerTrainConfig",
    "load_tokenizer",
    "train_bpe_tokenizer",
]
