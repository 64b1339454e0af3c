"""Training data for GPT pretraining: megatron-core GPTDatasets over Megatron .bin/.idx files.

Blending, splits and the index cache are megatron-core's (BlendedMegatronDatasetBuilder); this module
turns our config into its config and feeds each data-parallel rank its slice of every global batch.

``data.sample_layout`` picks how samples are cut from the documents (:data:`SAMPLE_LAYOUTS`): "packed" is
megatron-core's GPTDataset (documents concatenated, cut into windows); "document" is
:class:`DocumentPerSampleDataset`, one document per sample padded to the sequence length with the loss masked
on the padding (LeoYML/BioMamba's continued pretraining: each document tokenized alone, truncated to 1,024,
padded, the padding left out of the loss).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy
import torch
from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig, MockGPTDataset

from megatron_biomed.data import preflight
from megatron_biomed.data.errors import DataError


@dataclass(frozen=True)
class TokenInfo:
    """The two tokenizer facts megatron-core's GPTDataset needs (no pad token: it uses its own -1)."""

    vocab_size: int
    eod: int

    @property
    def unique_identifiers(self) -> dict:
        # megatron-core hashes the dataset config, tokenizer included, to name its index cache files.
        return {"class": "TokenInfo", "vocab_size": self.vocab_size, "eod": self.eod}


class DocumentPerSampleDataset(GPTDataset):
    """One document per sample: its first ``sequence_length + 1`` tokens (the inputs and the labels shifted by
    one), padded after it. Padding labels have loss mask 0 and token id 0 (megatron-core's GPTDataset handling of
    its pad sentinel), so no sample trains across a document boundary or on padding; a causal model (Mamba2,
    or a GPT with its causal mask) never lets the padding change the document's outputs. The documents of the
    split are visited in a fresh random order each epoch (seeded by ``random_seed``), as many epochs as
    ``num_samples`` needs."""

    def _build_document_sample_shuffle_indices(self):
        docs = numpy.asarray(self.indices, dtype=numpy.int64)
        if docs.size == 0:
            return docs, None, None
        epochs = max(1, -(-(self.num_samples or docs.size) // docs.size))
        rng = numpy.random.RandomState(self.config.random_seed)
        order = numpy.concatenate([rng.permutation(docs) for _ in range(epochs)])
        return order, None, None

    def __len__(self) -> int:
        return int(self.document_index.shape[0])

    def _query_document_sample_shuffle_indices(self, idx: int):
        doc = int(self.document_index[idx])
        want = self.config.sequence_length + self.config.add_extra_token_to_sequence
        length = min(int(self.dataset.sequence_lengths[doc]), want)
        text = self.dataset.get(doc, offset=0, length=length).astype(numpy.int64)
        padded = numpy.full(want, self._pad_token_id, dtype=numpy.int64)
        padded[:length] = text
        return padded, numpy.array([doc], dtype=numpy.int64), [length]


# data.sample_layout -> the dataset class that cuts the samples.
SAMPLE_LAYOUTS = {"packed": GPTDataset, "document": DocumentPerSampleDataset}


def parse_blend(blend: Sequence) -> tuple[list[str], Optional[list[float]]]:
    """``["a", "b"]`` (equal weights) or Megatron-LM's ``[w1, prefix1, w2, prefix2, ...]``."""
    items = [str(x) for x in blend]
    if not items:
        raise DataError("data.blend is empty: give one or more .bin/.idx prefixes (optionally with weights)")

    def is_number(s: str) -> bool:
        try:
            float(s)
            return True
        except ValueError:
            return False

    if is_number(items[0]):
        if len(items) % 2:
            raise DataError(
                f"data.blend {items}: weights and prefixes must alternate (weight prefix weight prefix ...)"
            )
        weights = [float(w) for w in items[0::2]]
        prefixes = items[1::2]
    else:
        weights, prefixes = None, items
    for prefix in prefixes:
        for ext in (".bin", ".idx"):
            if not Path(prefix + ext).is_file():
                raise DataError(f"data.blend: {prefix + ext} does not exist (prefixes name files without .bin/.idx)")
    return prefixes, weights


def build_gpt_datasets(
    blend: Sequence,
    *,
    seq_length: int,
    seed: int,
    num_samples: tuple[int, int, int],
    tokens: TokenInfo,
    split: str = "969,30,1",
    cache_dir: Optional[str] = None,
    mock: bool = False,
    reset_position_ids: bool = False,
    reset_attention_mask: bool = False,
    eod_mask_loss: bool = False,
    create_attention_mask: bool | None = None,
    sample_layout: str = "packed",
):
    """(train, valid, test) datasets of ``num_samples`` samples each (None where a split is empty).

    ``create_attention_mask`` (None: only with ``reset_attention_mask``, where documents must be kept apart):
    a sample's [1, S, S] causal mask is otherwise never read -- every core attention implies it -- and would be
    copied to the GPU with each micro-batch and keep PyTorch SDPA off its flash backend.

    Every prefix is checked first (:mod:`megatron_biomed.data.preflight`: index header, .bin length, token ids
    within ``tokens.vocab_size``, index cache built from this data); a bad one raises :class:`DataError`."""
    parsed = None
    if not mock:
        parsed = parse_blend(blend)
        preflight.check_prefixes(parsed[0], vocab_size=tokens.vocab_size, cache_dir=cache_dir)
    config = GPTDatasetConfig(
        random_seed=seed,
        sequence_length=seq_length,
        blend=parsed,
        split=split,
        path_to_cache=cache_dir,
        tokenizer=tokens,
        reset_position_ids=reset_position_ids,
        reset_attention_mask=reset_attention_mask,
        eod_mask_loss=eod_mask_loss,
        create_attention_mask=reset_attention_mask if create_attention_mask is None else create_attention_mask,
        mmap_bin_files=True,
    )
    if sample_layout not in SAMPLE_LAYOUTS:
        raise DataError(f"data.sample_layout={sample_layout!r}: expected one of {', '.join(SAMPLE_LAYOUTS)}")
    cls = MockGPTDataset if mock else SAMPLE_LAYOUTS[sample_layout]
    return BlendedMegatronDatasetBuilder(cls, list(num_samples), lambda: True, config).build()


def collate(samples: list[dict]) -> dict:
    return {k: torch.stack([torch.as_tensor(s[k]) for s in samples]) for k in samples[0]}


class MicroBatchIterator:
    """Micro-batches for one data-parallel rank, Megatron-LM's order: global batch ``g`` covers samples
    [g*G, (g+1)*G); micro-step ``k`` takes ``micro_batch_size * dp`` consecutive samples of which this rank
    takes its ``micro_batch_size``. Restarting at ``consumed_samples`` resumes the same sequence."""

    def __init__(self, dataset, micro_batch_size: int, dp_rank: int, dp_size: int, consumed_samples: int = 0):
        self.dataset = dataset
        self.mbs = micro_batch_size
        self.dp_rank = dp_rank
        self.dp_size = dp_size
        self.consumed_samples = consumed_samples

    def __iter__(self) -> Iterator[dict]:
        return self

    def __next__(self) -> dict:
        start = self.consumed_samples + self.dp_rank * self.mbs
        idx = [(start + i) % len(self.dataset) for i in range(self.mbs)]
        self.consumed_samples += self.mbs * self.dp_size
        return collate([self.dataset[i] for i in idx])
