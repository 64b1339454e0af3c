"""Documents -> token ids for the indexed writer: one batch at a time, as flat numpy arrays.

Wraps the fast batch encoder (tokenizer/batch_encode.py) and, with sentence splitting, the Punkt
splitter (sentences.py), and lays the ids out the way Megatron-LM's preprocess_data does.
"""

from __future__ import annotations

import numpy as np

from megatron_biomed.data.indexed.format import dtype_for_vocab
from megatron_biomed.data.indexed.sentences import load_sentence_splitter
from megatron_biomed.tokenizer.batch_encode import make_batch_encoder
from megatron_biomed.tokenizer.bio_tokenizer import load_tokenizer


class DocumentEncoder:
    """Tokenizer, end-of-document id, token dtype and optional sentence splitter of one process.

    ``backend`` and ``parallel`` are those of tokenizer/batch_encode.make_batch_encoder;
    ``split_sentences`` takes ``punkt_model``/``keep_newlines`` as sentences.load_sentence_splitter.
    """

    def __init__(self, tokenizer: str, backend: str = "auto", parallel: bool | None = None,
                 split_sentences: bool = False, punkt_model: str = "auto",
                 keep_newlines: bool = False) -> None:
        tok = load_tokenizer(tokenizer)
        self.eod = tok.eod
        self.dtype = dtype_for_vocab(tok.vocab_size)
        self.encoder = make_batch_encoder(tok.hf_tokenizer, backend, parallel)
        self.splitter = None
        if split_sentences:
            self.splitter = load_sentence_splitter(punkt_model, keep_newlines=keep_newlines)

    @property
    def backend(self) -> str:
        return self.encoder.name

    def encode_documents(self, texts: list[str], append_eod: bool
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """``(ids, sequence lengths, sequences per document or None for one each)`` of a batch,
        as Megatron-LM's preprocess_data builds them: sentences that tokenize to nothing are
        dropped, and the end-of-document id extends the last sequence of each non-empty document."""
        if self.splitter is None:
            ids, lengths = self.encoder.encode_batch(texts)
            per_doc = None
        else:
            sentences, per_doc = [], np.empty(len(texts), dtype=np.int64)
            for i, t in enumerate(texts):
                s = self.splitter(t)
                sentences.extend(s)
                per_doc[i] = len(s)
            ids, lengths = self.encoder.encode_batch(sentences)
            keep = lengths > 0  # Megatron-LM drops sentences that tokenize to nothing
            if not keep.all():
                doc_of = np.repeat(np.arange(len(texts)), per_doc)
                per_doc = np.bincount(doc_of[keep], minlength=len(texts)).astype(np.int64)
                lengths = lengths[keep]
        if append_eod:
            if per_doc is None:
                ends = np.cumsum(lengths)
                lengths = lengths + 1
            else:
                last_seq = (np.cumsum(per_doc) - 1)[per_doc > 0]
                ends = np.cumsum(lengths)[last_seq]
                lengths = lengths.copy()
                lengths[last_seq] += 1
            ids = np.insert(ids, ends, self.eod)
        return ids, lengths, per_doc
