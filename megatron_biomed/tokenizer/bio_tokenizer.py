"""BioTokenizer: a thin wrapper over a Hugging Face tokenizer directory (``tokenizer.json``).

It uses the ``tokenizers`` library directly (not ``transformers``) so that loading it is cheap
and it works in data-preprocessing processes that must not import torch.
"""

from __future__ import annotations

import os
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

EOD_TOKEN = "<|endoftext|>"


class BioTokenizer:
    """A byte-level BPE tokenizer with an end-of-document token.

    Attributes:
        path: the tokenizer directory it was loaded from.
        vocab_size: number of token ids, added tokens included.
        eod: id of ``<|endoftext|>``.
    """

    def __init__(self, tokenizer: Tokenizer, path: str | os.PathLike | None = None,
                 eod_token: str = EOD_TOKEN) -> None:
        self._tok = tokenizer
        self.path = Path(path) if path is not None else None
        eod = tokenizer.token_to_id(eod_token)
        if eod is None:
            raise ValueError(
                f"tokenizer {self.path or '<in memory>'} has no {eod_token!r} token; "
                "train it with tools/train_tokenizer.py or add the token as a special token"
            )
        self.eod: int = eod
        self.eod_token = eod_token

    @property
    def hf_tokenizer(self) -> Tokenizer:
        """The underlying ``tokenizers.Tokenizer``."""
        return self._tok

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    @property
    def eod_id(self) -> int:
        """Id of the end-of-document token (the same as ``eod``)."""
        return self.eod

    def token_to_id(self, token: str) -> int | None:
        """Id of ``token`` (a vocabulary or added token string), or None if it is not in the vocabulary."""
        return self._tok.token_to_id(token)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no special tokens added)."""
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text; multithreaded in Rust (see TOKENIZERS_PARALLELISM)."""
        return [e.ids for e in self._tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: list[int]) -> str:
        """Text of ``ids`` (special tokens kept, so ``<|endoftext|>`` round-trips)."""
        return self._tok.decode(list(ids), skip_special_tokens=False)

    def tokens(self, text: str) -> list[str]:
        """The token strings ``text`` is split into (byte-level symbols, e.g. ``Ġ`` for a space)."""
        return self._tok.encode(text, add_special_tokens=False).tokens

    def __repr__(self) -> str:
        return f"BioTokenizer(path={str(self.path)!r}, vocab_size={self.vocab_size}, eod={self.eod})"


def load_tokenizer(path: str | os.PathLike) -> BioTokenizer:
    """Load a tokenizer: a Hugging Face directory with ``tokenizer.json`` (or that file itself),
    or a GPT-2-style directory with only ``vocab.json`` and ``merges.txt``."""
    p = Path(path)
    file = p / "tokenizer.json" if p.is_dir() else p
    if file.is_file():
        return BioTokenizer(Tokenizer.from_file(str(file)), path=p)
    if p.is_dir() and (p / "vocab.json").is_file() and (p / "merges.txt").is_file():
        return BioTokenizer(_from_gpt2_files(p), path=p)
    raise FileNotFoundError(
        f"{p}: no tokenizer.json (nor vocab.json + merges.txt) here; pass a directory written by "
        "tools/train_tokenizer.py or by transformers' save_pretrained"
    )


def _from_gpt2_files(d: Path) -> Tokenizer:
    """GPT-2's byte-level BPE pipeline over ``vocab.json``/``merges.txt`` (as GPT2TokenizerFast)."""
    tok = Tokenizer(models.BPE.from_file(str(d / "vocab.json"), str(d / "merges.txt")))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    if tok.token_to_id(EOD_TOKEN) is not None:
        tok.add_special_tokens([AddedToken(EOD_TOKEN, special=True, normalized=False)])
    return tok
