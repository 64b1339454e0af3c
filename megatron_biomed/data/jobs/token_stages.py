"""Stages ``tokenize`` (per task), ``merge`` (per output file) and ``publish`` (one task): the cleaned JSONL of each
input, a partial ``.bin/.idx`` per task (data/indexed, one process, as tools/preprocess_data.py --workers 1), then the
partials merged in task order into files of about ``--target-file-size`` bytes each (data/indexed/merge.py), each file
by its own task, and the list of files and the cleaning report."""

from __future__ import annotations

import json
import os
import time
from collections import Counter

from megatron_biomed.data.cleaning.minhash import read_duplicates
from megatron_biomed.data.cleaning.report import CleaningReport
from megatron_biomed.data.indexed.format import output_prefix_for
from megatron_biomed.data.indexed.merge import merge_datasets
from megatron_biomed.data.indexed.preprocess import PreprocessConfig, preprocess
from megatron_biomed.data.jobs import paths
from megatron_biomed.data.jobs.clean_stages import decisions, kept_documents, load_meta
from megatron_biomed.data.jobs.markers import read_marker
from megatron_biomed.data.jobs.near_stages import duplicates_path
from megatron_biomed.data.jobs.spec import PipelineSpec
from megatron_biomed.data.sharding import commit, tmp_path, write_json_atomic

LEVEL = "document"  # no sentence splitting in the pipeline (tools/preprocess_data.py without --split-sentences)
REPORT_NAME = "cleaning_report.json"


def tokenize(spec: PipelineSpec, task: int) -> dict:
    d = decisions(spec)
    first = dict(zip(d["stems"], d["first_doc"]))
    # a set whatever read_duplicates returns (the brief allows a set or an ndarray; `in` on an ndarray is a scan)
    near = {int(i) for i in read_duplicates(duplicates_path(spec))} if spec.cleaning.near_dup else set()
    out = paths.jsonl_dir(spec)
    out.mkdir(parents=True, exist_ok=True)
    paths.parts_dir(spec).mkdir(parents=True, exist_ok=True)
    files, kept = [], 0
    for t in spec.groups()[task]:
        final = out / f"{t.stem}.jsonl"
        tmp = tmp_path(final)
        with open(tmp, "w", encoding="utf-8") as dst:
            for i, line in kept_documents(spec, t, first[t.stem]):
                if i not in near:
                    dst.write(line)
                    kept += 1
        commit(tmp, final)
        files.append(str(final))
    if not files:  # a task with no input files still writes its (empty) partial dataset
        empty = paths.parts_dir(spec) / f"part_{task:05d}.empty.jsonl"
        empty.touch()
        files = [str(empty)]
    stats = preprocess(PreprocessConfig(
        input=files, tokenizer=spec.tokenizer, output_prefix=paths.part_prefix(spec, task),
        json_keys=spec.json_keys, workers=1, append_eod=spec.append_eod,
        tokenizer_backend=spec.tokenizer_backend, progress=False))
    return {"documents": stats.documents, "tokens": stats.tokens, "input_bytes": stats.input_bytes,
            "tokenize_seconds": round(stats.seconds, 3), "backend": stats.backend, "records_kept": kept}


def group_by_size(prefixes: list[str], target: int) -> list[list[str]]:
    """Consecutive prefixes, a new group whenever the next ``.bin`` would take the group past ``target`` bytes
    (a group holds at least one; the partials are the unit, so choose --tasks so they are well under the target)."""
    groups: list[list[str]] = []
    size = 0
    for p in prefixes:
        n = os.path.getsize(p + ".bin")
        if groups and size + n <= target:
            groups[-1].append(p)
            size += n
        else:
            groups.append([p])
            size = n
    return groups


def output_groups(spec: PipelineSpec, key: str) -> list[tuple[str, list[str]]]:
    """(final prefix, partials) of each merged file, from the partials' sizes (all there once tokenize is complete)."""
    parts = [output_prefix_for(paths.part_prefix(spec, k), key, LEVEL) for k in range(spec.tasks)]
    groups = group_by_size(parts, spec.target_file_size)
    # one file: the single-process tool's name; several: numbered in order
    bases = [spec.output_prefix] if len(groups) == 1 else [f"{spec.output_prefix}_{i:05d}" for i in range(len(groups))]
    return [(output_prefix_for(b, key, LEVEL), g) for b, g in zip(bases, groups)]


def merge(spec: PipelineSpec, task: int) -> dict:
    """Merged file number ``task`` of each key (there are at most as many files as tasks; a task past the last file
    has nothing to do), so the files are written in parallel."""
    t0 = time.time()
    written: dict[str, dict | None] = {}
    for key in spec.json_keys:
        groups = output_groups(spec, key)
        if task >= len(groups):
            written[key] = None
            continue
        final, group = groups[task]
        docs, _ = merge_datasets(group, final)
        written[key] = {"prefix": final, "documents": docs, "bytes": os.path.getsize(final + ".bin"),
                        "parts": len(group)}
    return {"outputs": written, "merge_seconds": round(time.time() - t0, 3)}


def publish(spec: PipelineSpec, task: int) -> dict:
    """``<work>/outputs.json`` (the merged files, in order) and the cleaning report."""
    outs: dict[str, list[dict]] = {key: [] for key in spec.json_keys}
    for k in range(spec.tasks):
        marker = read_marker(spec.work, "merge", k)
        for key in spec.json_keys:
            if marker["outputs"][key] is not None:
                outs[key].append(marker["outputs"][key])
    write_json_atomic(paths.merge_manifest(spec), {"outputs": outs})
    _write_report(spec)
    return {"outputs": outs}


def _write_report(spec: PipelineSpec) -> None:
    """The cleaning report tools/pubmed_to_jsonl.py writes, from the stage outputs."""
    files = spec.file_tasks()
    report = CleaningReport(files_total=len(files), files_converted=len(files))
    for t in files:
        report.add_file(load_meta(spec, t))
    d = decisions(spec)
    step2 = Counter(d["dropped"])
    kept = d["documents"]
    if spec.cleaning.near_dup:
        n = len(read_duplicates(duplicates_path(spec)))
        step2["near_duplicate"] += n
        kept -= n
    report.records_kept = kept
    report.dropped.update(step2)
    write_json_atomic(spec.work / REPORT_NAME, report.to_dict())


def outputs(spec: PipelineSpec, key: str = "text") -> list[dict]:
    return json.loads(paths.merge_manifest(spec).read_text(encoding="utf-8"))["outputs"][key]
