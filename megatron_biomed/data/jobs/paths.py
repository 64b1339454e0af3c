"""Where each stage keeps its outputs inside the work directory."""

from __future__ import annotations

from pathlib import Path

from megatron_biomed.data.jobs.spec import PipelineSpec
from megatron_biomed.data.sharding import ShardTask


def stage1_dir(spec: PipelineSpec) -> Path:
    return spec.work / "stage1"  # convert_file's <stem>.jsonl and <stem>.meta.json, plus <stem>.hash.npy


def hash_path(spec: PipelineSpec, t: ShardTask) -> Path:
    return stage1_dir(spec) / f"{t.stem}.hash.npy"


def decide_dir(spec: PipelineSpec) -> Path:
    return spec.work / "decide"


def keep_path(spec: PipelineSpec, t: ShardTask) -> Path:
    return decide_dir(spec) / f"{t.stem}.keep.npy"  # step-1 line numbers that survive versions and exact dedup


def near_dir(spec: PipelineSpec) -> Path:
    return spec.work / "near"


def jsonl_dir(spec: PipelineSpec) -> Path:
    return spec.work / "jsonl"  # the cleaned JSONL, one <stem>.jsonl per input (what tools/pubmed_to_jsonl.py writes)


def parts_dir(spec: PipelineSpec) -> Path:
    return spec.work / "parts"


def part_prefix(spec: PipelineSpec, task: int) -> str:
    return str(parts_dir(spec) / f"part_{task:05d}")


def merge_manifest(spec: PipelineSpec) -> Path:
    return spec.work / "outputs.json"
