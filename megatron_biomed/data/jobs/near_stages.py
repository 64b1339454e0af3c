"""Stages ``signatures`` (per task), ``buckets`` (per band group) and ``near`` (one task): MinHash near-duplicate
removal across all tasks through cleaning/minhash.py, on the documents that survive the ``decide`` stage and numbered
as the single-process NearDuplicateIndex sees them."""

from __future__ import annotations

import json
from pathlib import Path

from megatron_biomed.data.cleaning.minhash import (
    MinHashParams,
    find_duplicates,
    write_buckets,
    write_signatures,
)
from megatron_biomed.data.jobs import paths
from megatron_biomed.data.jobs.clean_stages import decisions, kept_documents
from megatron_biomed.data.jobs.spec import PipelineSpec
from megatron_biomed.data.jobs.stages import band_groups


def signature_path(spec: PipelineSpec, task: int) -> Path:
    return paths.near_dir(spec) / f"signatures_{task:05d}.npz"


def bucket_path(spec: PipelineSpec, group: int) -> Path:
    return paths.near_dir(spec) / f"buckets_{group:05d}.npz"


def duplicates_path(spec: PipelineSpec) -> Path:
    return paths.near_dir(spec) / "duplicates.npz"


def signatures(spec: PipelineSpec, task: int) -> dict:
    d = decisions(spec)
    first = dict(zip(d["stems"], d["first_doc"]))
    paths.near_dir(spec).mkdir(parents=True, exist_ok=True)

    def docs():
        for t in spec.groups()[task]:
            for i, line in kept_documents(spec, t, first[t.stem]):
                yield i, json.loads(line)["text"]

    n = write_signatures(docs(), signature_path(spec, task), MinHashParams.from_cleaning(spec.cleaning))
    return {"documents": n}


def buckets(spec: PipelineSpec, group: int) -> dict:
    params = MinHashParams.from_cleaning(spec.cleaning)
    g = band_groups(spec)
    bands = list(range(group * params.bands // g, (group + 1) * params.bands // g))
    sigs = [signature_path(spec, k) for k in range(spec.tasks)]
    n = write_buckets(sigs, bands, bucket_path(spec, group), params)
    return {"bands": bands, "entries": n}


def near(spec: PipelineSpec, task: int) -> dict:
    n = find_duplicates([bucket_path(spec, g) for g in range(band_groups(spec))], duplicates_path(spec))
    return {"near_duplicates": n}
