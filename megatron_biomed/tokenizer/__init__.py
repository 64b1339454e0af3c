"""Tokenizers for megatron-biomed: load, train, extend and compare byte-level BPE vocabularies.

``load_tokenizer(path)`` reads a standard Hugging Face tokenizer directory (``tokenizer.json``) into a
:class:`BioTokenizer`; ``load_run_tokenizer(cfg)`` is how a run (pretraining, fine-tuning, evaluation,
generation) gets its tokenizer: ``data.tokenizer``, checked against the model's vocabulary.
"""

from megatron_biomed.tokenizer.bio_tokenizer import (
    EOD_TOKEN,
    BioTokenizer,
    load_tokenizer,
)
from megatron_biomed.tokenizer.for_run import TokenizerError, load_run_tokenizer
from megatron_biomed.tokenizer.train import TokenizerTrainConfig, biomedlm_tokenizer_config, train_bpe_tokenizer

__all__ = [
    "EOD_TOKEN",
    "BioTokenizer",
    "TokenizerError",
    "TokenizerTrainConfig",
    "biomedlm_tokenizer_config",
    "load_run_tokenizer",
    "load_tokenizer",
    "train_bpe_tokenizer",
]
