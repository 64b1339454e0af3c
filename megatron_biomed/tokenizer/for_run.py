"""The tokenizer of a run: the one place pretraining, fine-tuning, evaluation and generation load it from.

A run's tokenizer is ``data.tokenizer`` (a directory ``load_tokenizer`` reads), and its ids must fit the model's
embedding (``model.vocab_size``). Every problem is a :class:`TokenizerError` naming the field or path.
"""

from __future__ import annotations

import os

from megatron_biomed.config.experiment import ExperimentConfig
from megatron_biomed.errors import BiomedError
from megatron_biomed.tokenizer.bio_tokenizer import BioTokenizer, load_tokenizer


class TokenizerError(BiomedError, ValueError):
    """A run's tokenizer is missing, unreadable or does not fit the model."""


def load_run_tokenizer(cfg: ExperimentConfig, path: str | os.PathLike | None = None) -> BioTokenizer:
    """The tokenizer at ``path`` (default ``data.tokenizer``), checked against ``model.vocab_size``."""
    path = path or cfg.data.tokenizer
    if not path:
        raise TokenizerError("data.tokenizer is not set: give the tokenizer directory of the model")
    try:
        tok = load_tokenizer(path)
    except (OSError, ValueError) as e:  # no tokenizer files there, or no <|endoftext|> token
        raise TokenizerError(f"data.tokenizer: {e}") from e
    if tok.vocab_size > cfg.model.vocab_size:
        raise TokenizerError(
            f"data.tokenizer={path} has {tok.vocab_size} tokens but model.vocab_size is {cfg.model.vocab_size}; "
            "raise model.vocab_size (or use the model's own tokenizer)"
        )
    return tok
