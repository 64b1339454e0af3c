"""The pipeline definition: its stages in order, how many array tasks each has, and which function runs a task.

    convert     N  read + clean each input file of the task (cleaning/convert.convert_file), hash each kept text
    decide      1  versions/deletions across all files (reconcile.drop_decisions), then exact dedup over the hashes
    signatures  N  MinHash signatures of the task's surviving documents           (near dedup only)
    buckets     G  band buckets, one task per group of bands                      (near dedup only)
    near        1  near duplicates: the keep-first rule over all buckets          (near dedup only)
    tokenize    N  filter, write the cleaned JSONL, tokenize into a partial .bin/.idx (data/indexed)
    merge       N  the partials, in order, into files of --target-file-size: task g writes file g (if there is one)
    publish     1  outputs.json (the merged files in order) and the cleaning report
    index_cache 1  megatron-core's GPTDataset index cache for the blend          (with --index-cache-samples)

N is ``--tasks``; G is min(N, MinHash bands). A task function takes (spec, task index) and returns a dict that is
stored in its completion marker. Functions are named "module:attribute" and imported when a task runs, so the
index-cache stage alone pays for importing torch and megatron-core.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from megatron_biomed.data.cleaning.minhash import MinHashParams
from megatron_biomed.data.jobs.spec import PipelineSpec


@dataclass(frozen=True)
class Stage:
    name: str
    entry: str  # "module:function" run as function(spec, task) -> dict
    count: Callable[[PipelineSpec], int]
    enabled: Callable[[PipelineSpec], bool] = lambda spec: True

    def function(self) -> Callable[[PipelineSpec, int], dict]:
        module, attr = self.entry.split(":")
        return getattr(importlib.import_module(module), attr)


def _per_task(spec: PipelineSpec) -> int:
    return spec.tasks


def _one(spec: PipelineSpec) -> int:
    return 1


def band_groups(spec: PipelineSpec) -> int:
    return min(spec.tasks, MinHashParams.from_cleaning(spec.cleaning).bands)


def _near(spec: PipelineSpec) -> bool:
    return spec.cleaning.near_dup


_M = "megatron_biomed.data.jobs"
STAGES: tuple[Stage, ...] = (
    Stage("convert", f"{_M}.clean_stages:convert", _per_task),
    Stage("decide", f"{_M}.clean_stages:decide", _one),
    Stage("signatures", f"{_M}.near_stages:signatures", _per_task, _near),
    Stage("buckets", f"{_M}.near_stages:buckets", band_groups, _near),
    Stage("near", f"{_M}.near_stages:near", _one, _near),
    Stage("tokenize", f"{_M}.token_stages:tokenize", _per_task),
    Stage("merge", f"{_M}.token_stages:merge", _per_task),
    Stage("publish", f"{_M}.token_stages:publish", _one),
    Stage("index_cache", f"{_M}.cache_stage:index_cache", _one, lambda spec: spec.index_cache is not None),
)


def enabled_stages(spec: PipelineSpec) -> list[Stage]:
    return [s for s in STAGES if s.enabled(spec)]
