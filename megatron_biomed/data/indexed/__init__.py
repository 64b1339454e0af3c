"""Megatron ``.bin``/``.idx`` token datasets: writing, merging and building them from JSONL.

Nothing here imports torch or megatron-core: the files are written with numpy in exactly the
byte layout of ``megatron.core.datasets.indexed_dataset.IndexedDatasetBuilder``.
"""

from megatron_biomed.data.indexed.format import (
    IndexArrays,
    dtype_for_vocab,
    output_prefix_for,
    read_index,
)
from megatron_biomed.data.indexed.merge import merge_datasets
from megatron_biomed.data.indexed.writer import IndexedDatasetWriter

__all__ = [
    "IndexArrays",
    "IndexedDatasetWriter",
    "dtype_for_vocab",
    "merge_datasets",
    "output_prefix_for",
    "read_index",
]
