"""Step 1 of the pipeline: one input file -> one filtered JSONL shard plus a summary.

Runs in a worker process per file. Per-record filters are applied here; decisions that need
all files (versions, deletions, duplicates) are left to ``reconcile.py``, which reads the
``events`` list written in the summary: one entry per citation read (kept or not, so a newer
version that is filtered out still retires the older one) and per deletion.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import fields
from pathlib import Path

from megatron_biomed.data.cleaning.config import CleaningConfig
from megatron_biomed.data.cleaning.filters import filter_reason, flag_reasons
from megatron_biomed.data.readers import (
    BadInputError,
    BadRecord,
    MedlineDeletion,
    ReaderOptions,
    detect_format,
    get_reader,
    medline_key,
)
from megatron_biomed.data.sharding import ShardTask, commit, tmp_path, write_json_atomic

STAGE_DIR = ".stage1"  # inside --output-dir; hidden so `<output-dir>/*.jsonl` sees final shards only
NO_KEY = None


def record_key(record: dict) -> int | None:
    """Key for version/deletion/duplicate bookkeeping, from the record's reader; None: no bookkeeping."""
    reader = get_reader(record["source"])
    return reader.record_key(record) if reader.record_key is not None else NO_KEY


def record_rank(record: dict) -> list[int]:
    """``[rank]`` when the record's reader ranks copies of a key (reconcile keeps the highest), else ``[]``."""
    reader = get_reader(record["source"])
    return [int(reader.record_rank(record))] if reader.record_rank is not None else []


def reader_options(cfg: CleaningConfig) -> ReaderOptions:
    """The reader options a cleaning config sets: every :class:`ReaderOptions` field with a same-named config field."""
    return ReaderOptions(**{f.name: getattr(cfg, f.name) for f in fields(ReaderOptions) if hasattr(cfg, f.name)})


def stage1_digest(cfg: CleaningConfig, fmt: str, skip_bad: bool) -> str:
    """Settings that change a step-1 shard; a rerun redoes shards written under other settings."""
    relevant = {k: v for k, v in cfg.to_dict().items() if not k.startswith(("dedup", "near_dup"))}
    blob = json.dumps([relevant, fmt, skip_bad], sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def shard_paths(stage_dir: Path, stem: str) -> tuple[Path, Path]:
    return stage_dir / f"{stem}.jsonl", stage_dir / f"{stem}.meta.json"


def _input_id(path: Path) -> dict:
    st = os.stat(path)
    return {"input": str(path), "input_size": st.st_size, "input_mtime_ns": st.st_mtime_ns}


def is_converted(task: ShardTask, stage_dir: Path, digest: str) -> bool:
    """True when step 1 finished this file under the same settings and the file is unchanged."""
    shard, meta_path = shard_paths(stage_dir, task.stem)
    if not (shard.exists() and meta_path.exists()):
        return False
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return meta.get("digest") == digest and all(meta.get(k) == v for k, v in _input_id(task.input).items())


def convert_file(
    task: ShardTask, *, stage_dir: Path, fmt: str, cfg: CleaningConfig, skip_bad: bool, digest: str
) -> dict:
    """Convert ``task.input`` to ``<stage_dir>/<stem>.jsonl``; returns and writes the summary.

    Broken input raises :class:`BadInputError` (nothing is committed for this file) unless
    ``skip_bad``: then a broken record is counted as ``bad_record``, and a broken file is left
    out whole (its shard is empty and the problem is recorded as ``bad_file``).
    """
    stage_dir = Path(stage_dir)
    shard, meta_path = shard_paths(stage_dir, task.stem)
    tmp = tmp_path(shard)
    path = task.input
    dropped: Counter = Counter()
    flagged: Counter = Counter()  # kept records counted by a source's flag checks (never their text)
    events: list[list] = []
    bad_records: list[dict] = []
    records_read = deletions_read = lines = 0
    bad_file = None
    file_fmt = fmt
    try:
        if os.path.getsize(path) == 0:
            raise BadInputError(path, 0, "empty document (zero bytes)")
        if file_fmt == "auto":
            file_fmt = detect_format(path)
        with open(tmp, "w", encoding="utf-8") as out:
            reader = get_reader(file_fmt)
            for item in reader.read(Path(path), reader_options(cfg)):
                if isinstance(item, BadRecord):
                    if not skip_bad:
                        raise BadInputError(path, item.line, item.problem)
                    dropped["bad_record"] += 1
                    if len(bad_records) < 10:
                        bad_records.append({"path": str(path), "line": item.line, "problem": item.problem})
                    continue
                if isinstance(item, MedlineDeletion):
                    deletions_read += 1
                    events.append(["d", medline_key(item.pmid, item.version), -1])
                    continue
                records_read += 1
                record = item.to_dict()
                reason = filter_reason(record, cfg)
                record.pop("body", None)  # PMC: `text` and `sections` carry the body already
                if reason is None:
                    flagged.update(flag_reasons(record, cfg))
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")
                    line = lines
                    lines += 1
                else:
                    dropped[reason] += 1
                    line = -1
                events.append(["r", record_key(record), line, *record_rank(record)])
    except BadInputError as e:
        Path(tmp).unlink(missing_ok=True)
        if not skip_bad:
            raise
        # the file is left out whole, so a rerun with a repaired file is the only way it counts
        bad_file = {"path": e.path, "line": e.line, "problem": e.problem}
        dropped, flagged, events, bad_records = Counter(), Counter(), [], []
        records_read = deletions_read = lines = 0
        open(tmp, "w").close()
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    meta = {
        "stem": task.stem,
        "index": task.index,
        **_input_id(path),
        "format": file_fmt,
        "digest": digest,
        "lines": lines,
        "records_read": records_read,
        "deletions_read": deletions_read,
        "dropped": dict(dropped),
        "flagged": dict(flagged),
        "bad_file": bad_file,
        "bad_records": bad_records,
        "events": events,
    }
    commit(tmp, shard)
    # the summary goes last: a shard counts as converted only once its summary exists
    write_json_atomic(meta_path, meta, indent=None)
    return meta
