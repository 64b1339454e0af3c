"""Fast batch encoding to flat numpy arrays, for data preprocessing.

Two backends give identical ids for byte-level BPE ``tokenizer.json`` files:

* ``gigatoken`` (``pip install gigatoken``): a SIMD BPE implementation, roughly an order of
  magnitude faster than ``tokenizers`` here;
* ``hf``: Hugging Face ``tokenizers``' ``encode_batch`` (multithreaded; TOKENIZERS_PARALLELISM).

``auto`` picks gigatoken when it is installed and accepts the tokenizer, else ``hf``. Both return
``(ids, lengths)``: all ids back to back (uint32) and each text's number of ids (int64).
"""

from __future__ import annotations

import logging
import os

import numpy as np

from megatron_biomed.tokenizer.bio_tokenizer import load_tokenizer

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "gigatoken", "hf")


class HFBatchEncoder:
    """``tokenizers.Tokenizer.encode_batch`` flattened to numpy."""

    name = "hf"

    def __init__(self, tokenizer) -> None:
        self._tok = tokenizer

    def encode_batch(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        encs = self._tok.encode_batch_fast(texts, add_special_tokens=False)
        lengths = np.fromiter((len(e.ids) for e in encs), dtype=np.int64, count=len(encs))
        ids = np.fromiter((i for e in encs for i in e.ids), dtype=np.uint32, count=int(lengths.sum()))
        return ids, lengths


class GigatokenBatchEncoder:
    """``gigatoken.Tokenizer.encode_batch``; its awkward result is read without copying."""

    name = "gigatoken"

    def __init__(self, tokenizer, parallel: bool | None = None) -> None:
        import gigatoken  # optional: an accelerated encoder, used only when installed and chosen

        self._tok = gigatoken.Tokenizer.from_json(tokenizer.to_str())
        self._parallel = parallel

    def encode_batch(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        import awkward as ak  # optional: comes with gigatoken

        arr = self._tok.encode_batch(texts, parallel=self._parallel)
        layout = ak.to_layout(arr)
        if hasattr(layout, "offsets") and hasattr(layout.content, "data"):
            offsets = np.asarray(layout.offsets.data, dtype=np.int64)
            content = np.asarray(layout.content.data)
            ids = content[offsets[0]:offsets[-1]]
            return ids.astype(np.uint32, copy=False), np.diff(offsets)
        lengths = np.asarray(ak.num(arr, axis=1), dtype=np.int64)
        return np.asarray(ak.flatten(arr), dtype=np.uint32), lengths


def gigatoken_available() -> bool:
    try:
        import gigatoken  # noqa: F401  (optional: is it installed?)
    except ImportError:
        return False
    return True


def make_batch_encoder(tokenizer, backend: str = "auto", parallel: bool | None = None):
    """A batch encoder for ``tokenizer``: a path ``load_tokenizer`` accepts, or a loaded
    ``tokenizers.Tokenizer``. ``parallel`` (gigatoken only) chooses its thread pool; None lets
    gigatoken decide (sequential inside worker processes). ``auto`` only takes gigatoken after
    checking that it agrees with ``tokenizers`` on probe texts."""
    if backend not in BACKENDS:
        raise ValueError(f"--tokenizer-backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if isinstance(tokenizer, (str, os.PathLike)):
        tokenizer = load_tokenizer(tokenizer).hf_tokenizer
    if backend == "hf":
        return HFBatchEncoder(tokenizer)
    if backend == "gigatoken":
        if not gigatoken_available():
            raise ImportError("--tokenizer-backend gigatoken: gigatoken is not installed "
                              "(pip install gigatoken), or use --tokenizer-backend hf")
        return GigatokenBatchEncoder(tokenizer, parallel)
    hf = HFBatchEncoder(tokenizer)
    if gigatoken_available():
        try:
            fast = GigatokenBatchEncoder(tokenizer, parallel)
            if _agree(fast, hf):
                return fast
            logger.warning("gigatoken disagrees with tokenizers on this tokenizer; using tokenizers")
        except (ValueError, TypeError, RuntimeError, OSError, KeyError, NotImplementedError) as e:
            # a tokenizer gigatoken cannot load: fall back to the reference implementation
            logger.info("gigatoken cannot load this tokenizer (%s); using tokenizers", e)
    return hf


# exercises pre-tokenization edge cases: whitespace runs, digits, unicode, special tokens
_PROBE = [
    "Clonidine 5-20 mg/kg i.v. (n = 12) reduced BP by ~15%; see Fig. 2B.",
    "  two  spaces,\ttabs\n\nnewlines and trailing space ",
    "\u00b5g/mL \u03b1-synuclein \u2264 3\u00b0C \u00e9t\u00e9 \U0001F9EA 12345678 <|endoftext|>x",
    "don't we'll I'M O'Neil's 1990s",
]


def _agree(fast: GigatokenBatchEncoder, hf: HFBatchEncoder) -> bool:
    # sequential on both sides: starts no thread pool, so the caller may still fork afterwards
    got = fast._tok.encode_batch(_PROBE, parallel=False).to_list()
    want = [hf._tok.encode(t, add_special_tokens=False).ids for t in _PROBE]
    return got == want
