"""Train a byte-level BPE tokenizer (GPT-2 style, as BioMedLM's) with Hugging Face ``tokenizers``.

Defaults follow BioMedLM: 28,896 tokens, merges seen at least twice, ``<|endoftext|>`` as the only
special token (it doubles as BOS/EOS/UNK, as in GPT-2). The result is a standard Hugging Face
tokenizer directory that ``transformers.AutoTokenizer.from_pretrained`` loads.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from megatron_biomed.tokenizer.bio_tokenizer import EOD_TOKEN, BioTokenizer

BIOMEDLM_VOCAB_SIZE = 28896


@dataclass
class TokenizerTrainConfig:
    """What tools/train_tokenizer.py trains; field names match its flags."""

    vocab_size: int = BIOMEDLM_VOCAB_SIZE
    min_frequency: int = 2
    special_tokens: list[str] = field(default_factory=lambda: [EOD_TOKEN])
    model_max_length: int = 1024
    show_progress: bool = False

    def __post_init__(self) -> None:
        if self.vocab_size < 257 + len(self.special_tokens):
            raise ValueError(f"vocab_size={self.vocab_size}: must exceed the 256 byte symbols "
                             f"plus {len(self.special_tokens)} special token(s)")
        if self.min_frequency < 1:
            raise ValueError(f"min_frequency={self.min_frequency}: must be >= 1")
        if EOD_TOKEN not in self.special_tokens:
            raise ValueError(f"special_tokens must include {EOD_TOKEN!r} (the end-of-document id)")


def new_byte_level_bpe() -> Tokenizer:
    """An untrained GPT-2-style byte-level BPE pipeline (no prefix space, offsets kept)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def train_bpe_tokenizer(texts: Iterable[str], config: TokenizerTrainConfig,
                        output_dir: str | os.PathLike | None = None) -> BioTokenizer:
    """Train on ``texts`` and, when ``output_dir`` is given, save a Hugging Face tokenizer
    directory there (see :func:`save_tokenizer_dir`)."""
    tok = new_byte_level_bpe()
    trainer = trainers.BpeTrainer(
        vocab_size=config.vocab_size,
        min_frequency=config.min_frequency,
        special_tokens=list(config.special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=config.show_progress,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    if output_dir is not None:
        save_tokenizer_dir(tok, output_dir, model_max_length=config.model_max_length)
    return BioTokenizer(tok, path=output_dir)


def save_tokenizer_dir(tok: Tokenizer, output_dir: str | os.PathLike,
                       model_max_length: int = 1024, eod_token: str = EOD_TOKEN) -> Path:
    """Write ``tokenizer.json``, ``tokenizer_config.json`` and ``special_tokens_map.json``.

    The config names ``PreTrainedTokenizerFast`` so transformers builds its fast tokenizer straight
    from ``tokenizer.json``; ``<|endoftext|>`` is BOS, EOS and UNK as in GPT-2/BioMedLM."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    special = {"bos_token": eod_token, "eos_token": eod_token, "unk_token": eod_token}
    added = {}
    for content in _added_special_tokens(tok):
        added[str(tok.token_to_id(content))] = {
            "content": content, "lstrip": False, "normalized": False, "rstrip": False,
            "single_word": False, "special": True,
        }
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_prefix_space": False,
        "model_max_length": model_max_length,
        "clean_up_tokenization_spaces": False,
        "added_tokens_decoder": added,
        **special,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    return out


def _added_special_tokens(tok: Tokenizer) -> list[str]:
    return [t.content for t in tok.get_added_tokens_decoder().values() if t.special]
