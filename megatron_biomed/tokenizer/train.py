"""Train a byte-level BPE tokenizer (GPT-2 style, as BioMedLM's) with Hugging Face ``tokenizers``.

The vocabulary defaults follow BioMedLM: 28,896 tokens, merges seen at least twice, ``<|endoftext|>`` as the
only special token (it doubles as BOS/EOS/UNK, as in GPT-2). Where the special tokens sit is a choice
(``special_tokens_position``): "first" (ids 0.., this project's original layout, the default so that
existing tokenizers and their datasets keep their ids) or "last" (after every learned token, as BioMedLM's
published tokenizer has ``<|endoftext|>`` = 28,895 of 28,896); :func:`biomedlm_tokenizer_config` is the
published recipe. The result is a standard Hugging Face tokenizer directory that
``transformers.AutoTokenizer.from_pretrained`` loads.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from megatron_biomed.tokenizer.bio_tokenizer import EOD_TOKEN, BioTokenizer

BIOMEDLM_VOCAB_SIZE = 28896
# TokenizerTrainConfig.special_tokens_position choices: the special tokens' ids before or after the learned ones.
SPECIAL_TOKENS_POSITIONS = ("first", "last")


@dataclass
class TokenizerTrainConfig:
    """What tools/train_tokenizer.py trains; field names match its flags.

    ``special_tokens_position``: "first" gives the special tokens ids 0.. (trained in, the BPE trainer's
    layout); "last" trains ``vocab_size - len(special_tokens)`` learned tokens and appends the special tokens
    after them, so ``<|endoftext|>`` is the last id (BioMedLM). ``trim_offsets``: the byte-level
    post-processor leaves the leading space out of a token's character offsets (BioMedLM) or keeps it.
    """

    vocab_size: int = BIOMEDLM_VOCAB_SIZE
    min_frequency: int = 2
    special_tokens: list[str] = field(default_factory=lambda: [EOD_TOKEN])
    model_max_length: int = 1024
    show_progress: bool = False
    special_tokens_position: str = "first"
    trim_offsets: bool = False

    def __post_init__(self) -> None:
        if self.special_tokens_position not in SPECIAL_TOKENS_POSITIONS:
            raise ValueError(f"special_tokens_position={self.special_tokens_position!r}: must be one of "
                             f"{', '.join(SPECIAL_TOKENS_POSITIONS)}")
        if self.vocab_size < 257 + len(self.special_tokens):
            raise ValueError(f"vocab_size={self.vocab_size}: must exceed the 256 byte symbols "
                             f"plus {len(self.special_tokens)} special token(s)")
        if self.min_frequency < 1:
            raise ValueError(f"min_frequency={self.min_frequency}: must be >= 1")
        if EOD_TOKEN not in self.special_tokens:
            raise ValueError(f"special_tokens must include {EOD_TOKEN!r} (the end-of-document id)")


def biomedlm_tokenizer_config() -> TokenizerTrainConfig:
    """BioMedLM's published tokenizer recipe (sources: stanford-crfm/BioMedLM tokenize/train_bpe.py @ 9e35fdd,
    the published tokenizer and config.json, BioMedLM paper arXiv 2403.18421 Table 2)."""
    return TokenizerTrainConfig(
        vocab_size=BIOMEDLM_VOCAB_SIZE,  # paper Table 2; train_bpe.py vocab_size=28896; config.json vocab_size
        min_frequency=2,  # paper Table 2; train_bpe.py min_frequency=2
        special_tokens=[EOD_TOKEN],  # the published tokenizer's only special token
        special_tokens_position="last",  # published: <|endoftext|> = 28895 (config.json bos/eos_token_id)
        trim_offsets=True,  # train_bpe.py: processors.ByteLevel(trim_offsets=True)
        model_max_length=1024,  # paper Table 1 context length; config.json n_positions
    )


def new_byte_level_bpe(trim_offsets: bool = False) -> Tokenizer:
    """An untrained GPT-2-style byte-level BPE pipeline (no prefix space; offsets kept or trimmed)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=trim_offsets)
    return tok


def train_bpe_tokenizer(texts: Iterable[str], config: TokenizerTrainConfig,
                        output_dir: str | os.PathLike | None = None) -> BioTokenizer:
    """Train on ``texts`` and, when ``output_dir`` is given, save a Hugging Face tokenizer
    directory there (see :func:`save_tokenizer_dir`)."""
    tok = new_byte_level_bpe(trim_offsets=config.trim_offsets)
    last = config.special_tokens_position == "last"
    trainer = trainers.BpeTrainer(
        vocab_size=config.vocab_size - len(config.special_tokens) if last else config.vocab_size,
        min_frequency=config.min_frequency,
        special_tokens=[] if last else list(config.special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=config.show_progress,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    if last:  # appended after the learned tokens: ids len(learned) .. (vocab_size - 1 when the corpus fills it)
        tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in config.special_tokens])
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
