"""Stages ``convert`` (per task) and ``decide`` (one task): the cleaning of tools/pubmed_to_jsonl.py, split so that
only the cross-file decisions run in one process."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from megatron_biomed.data.cleaning.convert import convert_file, shard_paths, stage1_digest
from megatron_biomed.data.cleaning.dedup import text_hash
from megatron_biomed.data.cleaning.reconcile import drop_decisions
from megatron_biomed.data.jobs import paths
from megatron_biomed.data.jobs.spec import PipelineSpec
from megatron_biomed.data.sharding import ShardTask, commit, tmp_path, write_json_atomic

DECISIONS = "decisions.json"


def save_npy(path: Path, array: np.ndarray) -> None:
    tmp = tmp_path(path)
    with open(tmp, "wb") as f:
        np.save(f, array)
    commit(tmp, path)


def _drop_stale_tmp(directory: Path, stem: str) -> None:
    for p in directory.glob(f"{stem}.*.tmp"):  # left by a task killed mid-write (sharding.tmp_path names)
        p.unlink(missing_ok=True)


def convert(spec: PipelineSpec, task: int) -> dict:
    """Each input file of the task -> ``stage1/<stem>.jsonl`` + summary (convert_file), and the normalized-text
    hash of each of its lines (``<stem>.hash.npy``) for the deciding task."""
    out = paths.stage1_dir(spec)
    out.mkdir(parents=True, exist_ok=True)
    digest = stage1_digest(spec.cleaning, spec.format, spec.skip_bad)
    files = records = lines = 0
    for t in spec.groups()[task]:
        _drop_stale_tmp(out, t.stem)
        meta = convert_file(t, stage_dir=out, fmt=spec.format, cfg=spec.cleaning, skip_bad=spec.skip_bad,
                            digest=digest)
        shard, _ = shard_paths(out, t.stem)
        with open(shard, encoding="utf-8") as f:
            hashes = np.fromiter((text_hash(json.loads(line)["text"]) for line in f), dtype=np.uint64)
        save_npy(paths.hash_path(spec, t), hashes)
        files += 1
        records += meta["records_read"]
        lines += meta["lines"]
    return {"files": files, "records_read": records, "lines": lines}


def load_meta(spec: PipelineSpec, t: ShardTask) -> dict:
    _, meta = shard_paths(paths.stage1_dir(spec), t.stem)
    return json.loads(meta.read_text(encoding="utf-8"))


def decide(spec: PipelineSpec, task: int) -> dict:
    """Versions/deletions over every file's events (reconcile.drop_decisions), then exact duplicates keep-first in
    file order, exactly as reconcile.reconcile feeds them; writes the surviving line numbers per file and the global
    index of each file's first surviving document (the order near dedup numbers documents in)."""
    cfg = spec.cleaning
    files = spec.file_tasks()
    metas = [load_meta(spec, t) for t in files]
    drops = drop_decisions(metas, cfg)
    dropped: Counter = Counter(drops.values())
    seen: set[int] = set()
    out = paths.decide_dir(spec)
    out.mkdir(parents=True, exist_ok=True)
    first_doc, docs = [], 0
    for pos, (t, meta) in enumerate(zip(files, metas)):
        hashes = np.load(paths.hash_path(spec, t))
        keep = []
        for line in range(meta["lines"]):
            if (pos, line) in drops:
                continue
            if cfg.dedup_exact:
                h = int(hashes[line])
                if h in seen:
                    dropped["duplicate_text"] += 1
                    continue
                seen.add(h)
            keep.append(line)
        save_npy(paths.keep_path(spec, t), np.asarray(keep, dtype=np.int64))
        first_doc.append(docs)
        docs += len(keep)
    write_json_atomic(out / DECISIONS, {"stems": [t.stem for t in files], "first_doc": first_doc, "documents": docs,
                                        "dropped": dict(dropped)})
    return {"documents": docs, "dropped": dict(dropped)}


def decisions(spec: PipelineSpec) -> dict:
    return json.loads((paths.decide_dir(spec) / DECISIONS).read_text(encoding="utf-8"))


def kept_documents(spec: PipelineSpec, t: ShardTask, first_doc: int):
    """(global document index, step-1 line) of each surviving line of one file, in order."""
    keep = np.load(paths.keep_path(spec, t))
    shard, _ = shard_paths(paths.stage1_dir(spec), t.stem)
    want = iter(keep.tolist())
    nxt = next(want, None)
    j = 0
    with open(shard, encoding="utf-8") as f:
        for line_no, line in enumerate(f):
            if line_no == nxt:
                yield first_doc + j, line
                j += 1
                nxt = next(want, None)
                if nxt is None:
                    return
