"""Extend a base tokenizer with frequent domain words it fragments (the 70B recipe's approach).

Mining: pre-tokenize domain text with the base tokenizer's own pre-tokenizer, count the words, and
keep the ``top_n`` most frequent ones that the base BPE splits into ``min_pieces`` or more tokens.

Adding: each word's byte-level form (e.g. ``Ġclonidine``) becomes a vocabulary entry with a new id
after the current largest one, and the BPE model is switched to ``ignore_merges``, under which a
pre-token found whole in the vocabulary is one token. So exactly these words become single tokens,
every other word is merged as before, and decoding is unchanged (the entries are ordinary
byte-level tokens, not added tokens).

The mapping ``new_token_pieces.json`` (``{"<new id>": [base ids it replaces], ...}``) lets the
training code initialise each new embedding row as the mean of its pieces' rows.

Added tokens (:func:`add_special_tokens`): the markers a fine-tuning input format needs (BioMedLM's ``[PAD]``,
``[SEP]``, ``<|ANSWER|>``, ...) become Hugging Face *added tokens* with new ids after the largest one, matched
whole in the text and never merged; their pieces are the base tokenizer's ids of the token's literal text, so
the same import path (``tools/convert_hf.py import --extend-vocab``) grows the embedding and initialises their
rows. The roles transformers knows (``[PAD]`` pad, ``[SEP]`` sep, ``[CLS]`` cls) are written to
``tokenizer_config.json`` / ``special_tokens_map.json`` and those three are special tokens, as BioMedLM's
``tokenizer.add_special_tokens`` made them; the others are plain added tokens (its ``tokenizer.add_tokens``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer, decoders

PIECES_FILE = "new_token_pieces.json"
# Added tokens with a role transformers knows: BioMedLM finetune/mc/run_multiple_choice.py and
# finetune/seqcls/run_seqcls_gpt.py add them with add_special_tokens({'pad_token': '[PAD]', ...}).
TOKEN_ROLES = {"[PAD]": "pad_token", "[CLS]": "cls_token", "[SEP]": "sep_token"}
SUMMARY_FILE = "extend_vocab_summary.json"
_WORD = re.compile(r"^ ?[^\W_]*[^\W\d_][^\W_]*$")  # optional leading space, letters/digits, >= 1 letter


@dataclass
class ExtendVocabConfig:
    """What tools/extend_vocab.py does; field names match its flags."""

    top_n: int = 2000
    min_pieces: int = 3
    min_count: int = 2
    min_chars: int = 4

    def __post_init__(self) -> None:
        if self.top_n < 1 or self.min_pieces < 2:
            raise ValueError(f"top_n={self.top_n} must be >= 1 and min_pieces={self.min_pieces} >= 2")


@dataclass
class MinedWord:
    token: str  # byte-level form, e.g. "Ġclonidine"
    text: str  # the text it stands for, e.g. " clonidine"
    count: int
    pieces: list[int]  # base-token ids it is split into


def _byte_decoder(tok: Tokenizer):
    dec = decoders.ByteLevel()
    return lambda token: dec.decode([token])


def mine_fragmented_words(base: Tokenizer, texts: Iterable[str], config: ExtendVocabConfig) -> list[MinedWord]:
    """The ``top_n`` most frequent words of ``texts`` that ``base`` splits into >= min_pieces tokens
    (ties broken alphabetically, so the result is deterministic)."""
    if base.pre_tokenizer is None:
        raise ValueError("base tokenizer has no pre-tokenizer; extend_vocab expects a byte-level BPE")
    counts: Counter = Counter()
    pre = base.pre_tokenizer
    for t in texts:
        counts.update(w for w, _ in pre.pre_tokenize_str(t))
    decode = _byte_decoder(base)
    vocab = base.get_vocab()
    mined: list[MinedWord] = []
    for token, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if count < config.min_count:
            break
        if token in vocab:
            continue
        text = decode(token)
        if len(text.strip()) < config.min_chars or not _WORD.match(text):
            continue
        pieces = [t.id for t in base.model.tokenize(token)]
        if len(pieces) >= config.min_pieces:
            mined.append(MinedWord(token, text, count, pieces))
            if len(mined) == config.top_n:
                break
    return mined


def extend_tokenizer(base_dir: str | os.PathLike, words: list[MinedWord],
                     output_dir: str | os.PathLike) -> dict[int, list[int]]:
    """Write ``output_dir``: the base directory's files with the extended ``tokenizer.json``,
    ``new_token_pieces.json`` and a summary. Returns {new id: base piece ids}."""
    base_dir, out = Path(base_dir), Path(output_dir)
    data = json.loads((base_dir / "tokenizer.json").read_text(encoding="utf-8"))
    model = data["model"]
    if model.get("type") != "BPE":
        raise ValueError(f"{base_dir}/tokenizer.json: model type {model.get('type')!r}, expected BPE")
    vocab: dict[str, int] = model["vocab"]
    next_id = 1 + max([*vocab.values(), *(t["id"] for t in data.get("added_tokens", []))])
    pieces: dict[int, list[int]] = {}
    for w in words:
        if w.token in vocab:
            raise ValueError(f"{w.token!r} is already in the base vocabulary")
        vocab[w.token] = next_id
        pieces[next_id] = list(w.pieces)
        next_id += 1
    model["ignore_merges"] = True
    out.mkdir(parents=True, exist_ok=True)
    for f in base_dir.iterdir():
        if f.is_file() and f.name not in ("tokenizer.json", PIECES_FILE, SUMMARY_FILE):
            shutil.copy2(f, out / f.name)
    (out / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    (out / PIECES_FILE).write_text(json.dumps({str(k): v for k, v in pieces.items()}, indent=0) + "\n")
    summary = {"base_tokenizer": str(base_dir), "num_added": len(words),
               "words": [{"id": i, "text": w.text, "count": w.count, "pieces": w.pieces}
                         for i, w in zip(pieces, words)]}
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    return pieces


def load_new_token_pieces(path: str | os.PathLike) -> dict[int, list[int]]:
    """Read ``new_token_pieces.json`` (a file, or the extended tokenizer directory)."""
    p = Path(path)
    p = p / PIECES_FILE if p.is_dir() else p
    raw = json.loads(p.read_text())
    return {int(k): [int(x) for x in v] for k, v in raw.items()}


def init_new_rows_from_pieces(embedding, pieces: dict[int, list[int]]) -> None:
    """Set each new row of ``embedding`` (a numpy array or torch tensor of shape
    [>= new vocab, hidden], already resized) to the mean of its base pieces' rows, in place.
    Pieces are always base ids, so the order of filling does not matter."""
    for new_id, ids in pieces.items():
        if not ids or max(ids) >= new_id:
            raise ValueError(f"new token {new_id}: pieces {ids} must be earlier (base) ids")
        embedding[new_id] = embedding[list(ids)].mean(0)


def add_special_tokens(base_dir: str | os.PathLike, tokens: Iterable[str],
                       output_dir: str | os.PathLike) -> dict[int, list[int]]:
    """Write ``output_dir``: the base directory's tokenizer with ``tokens`` added (new ids after the largest,
    in the given order; tokens it already holds are left as they are), ``new_token_pieces.json`` ({new id:
    base ids of the token's text}) and a summary. Returns {new id: pieces}."""
    base_dir, out = Path(base_dir), Path(output_dir)
    data = json.loads((base_dir / "tokenizer.json").read_text(encoding="utf-8"))
    base = Tokenizer.from_file(str(base_dir / "tokenizer.json"))
    added = data.setdefault("added_tokens", [])
    next_id = 1 + max([*data["model"]["vocab"].values(), *(t["id"] for t in added)])
    pieces: dict[int, list[int]] = {}
    for token in tokens:
        if base.token_to_id(token) is not None or any(t["content"] == token for t in added):
            continue
        ids = base.encode(token, add_special_tokens=False).ids
        if not ids:
            raise ValueError(f"{token!r}: the base tokenizer gives it no pieces to initialise its row from")
        added.append({"id": next_id, "content": token, "single_word": False, "lstrip": False, "rstrip": False,
                      "normalized": False, "special": token in TOKEN_ROLES})  # fmt: skip
        pieces[next_id] = ids
        next_id += 1
    out.mkdir(parents=True, exist_ok=True)
    for f in base_dir.iterdir():
        if f.is_file() and f.name not in ("tokenizer.json", PIECES_FILE, SUMMARY_FILE):
            shutil.copy2(f, out / f.name)
    (out / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    roles = {TOKEN_ROLES[t["content"]]: t["content"] for t in added if t["content"] in TOKEN_ROLES}
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        path = out / name
        current = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        if "added_tokens_decoder" in current:  # transformers >= 4.34 lists every added token here as well
            current["added_tokens_decoder"] |= {str(t["id"]): {k: v for k, v in t.items() if k != "id"} for t in added}
        path.write_text(json.dumps(current | roles, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / PIECES_FILE).write_text(json.dumps({str(k): v for k, v in pieces.items()}, indent=0) + "\n")
    summary = {"base_tokenizer": str(base_dir), "num_added": len(pieces),
               "added_tokens": [{"id": t["id"], "token": t["content"], "pieces": pieces[t["id"]]}
                                for t in added if t["id"] in pieces]}
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    return pieces
