"""PubMed/PMC XML -> cleaned JSONL shards: the library behind ``tools/pubmed_to_jsonl.py``.

Step 1 (parallel, one process per file, resumable): read each input, apply the per-record
filters, write ``<output-dir>/.stage1/<stem>.jsonl`` and a summary. Step 2 (one process,
``reconcile.py``): versions, deletions and duplicates across all files in file-name order, then
``<output-dir>/<stem>.jsonl`` per input and ``<output-dir>/cleaning_report.json``.

A rerun converts only the inputs that are new, changed, or were converted under other settings,
and redoes step 2 only when some step-1 result or the settings changed.
"""

from __future__ import annotations

import glob
import hashlib
import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from megatron_biomed.data.cleaning.config import CleaningConfig
from megatron_biomed.data.cleaning.convert import STAGE_DIR, convert_file, is_converted, stage1_digest
from megatron_biomed.data.cleaning.reconcile import reconcile
from megatron_biomed.data.cleaning.report import CleaningReport
from megatron_biomed.data.readers import formats, input_suffixes, takes
from megatron_biomed.data.sharding import make_tasks, remove_stale_tmp, run_shards, write_json_atomic

REPORT_NAME = "cleaning_report.json"


@dataclass(frozen=True)
class PipelineConfig:
    output_dir: Path
    format: str = "auto"  # "medline", "pmc", or "auto" (root element of each file)
    workers: int = 1
    skip_bad: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if self.format not in ("auto", *formats()):
            raise ValueError(f"PipelineConfig.format must be one of {('auto', *formats())}, got {self.format!r}")
        if self.workers < 1:
            raise ValueError(f"PipelineConfig.workers must be >= 1, got {self.workers}")


def expand_inputs(specs: list[str]) -> list[Path]:
    """Files named by ``--input``: a file, a glob, or a directory (searched recursively)."""
    paths: list[Path] = []
    for spec in specs:
        p = Path(spec)
        if p.is_dir():
            suffixes = input_suffixes()
            found = [q for q in p.rglob("*") if q.is_file() and q.name.endswith(suffixes) and takes(q)]
            if not found:
                raise FileNotFoundError(f"--input {spec}: directory has no files ending in {suffixes}")
            paths.extend(found)
        elif p.is_file():
            paths.append(p)
        elif glob.has_magic(spec):
            found = [Path(q) for q in glob.glob(spec, recursive=True) if Path(q).is_file()]
            if not found:
                raise FileNotFoundError(f"--input {spec}: the pattern matches no file")
            paths.extend(found)
        else:
            raise FileNotFoundError(f"--input {spec}: no such file or directory")
    return paths


def _fingerprint(metas: list[dict], cfg: CleaningConfig) -> str:
    h = hashlib.sha1(json.dumps(cfg.to_dict(), sort_keys=True).encode())
    for m in metas:
        h.update(json.dumps([m["stem"], m["input"], m["input_size"], m["input_mtime_ns"], m["digest"]]).encode())
    return h.hexdigest()


def run_pipeline(inputs: list[str | Path], pipe: PipelineConfig, cfg: CleaningConfig) -> CleaningReport:
    """Convert ``inputs`` into ``pipe.output_dir``; returns the report (also written as JSON).

    Raises :class:`~megatron_biomed.data.readers.BadInputError` on the first broken file unless
    ``pipe.skip_bad``; final shards are only written once every file has been read.
    """
    out_dir = Path(pipe.output_dir)
    stage_dir = out_dir / STAGE_DIR
    stage_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(stage_dir)
    remove_stale_tmp(out_dir)
    tasks = make_tasks(inputs)
    digest = stage1_digest(cfg, pipe.format, pipe.skip_bad)
    work = partial(
        convert_file, stage_dir=stage_dir, fmt=pipe.format, cfg=cfg, skip_bad=pipe.skip_bad, digest=digest
    )
    results = run_shards(
        tasks,
        work,
        workers=pipe.workers,
        is_complete=partial(is_converted, stage_dir=stage_dir, digest=digest),
        desc="convert",
        progress=pipe.progress,
    )
    metas = []
    for t in tasks:
        meta = results.get(t.index)
        if meta is None:
            meta = json.loads((stage_dir / f"{t.stem}.meta.json").read_text(encoding="utf-8"))
        metas.append(meta)

    report = CleaningReport(files_total=len(tasks), files_converted=sum(1 for r in results.values() if r))
    for meta in metas:
        report.add_file(meta)
    fingerprint = _fingerprint(metas, cfg)
    report_path = out_dir / REPORT_NAME
    previous = _load(report_path)
    finals_exist = all((out_dir / f"{t.stem}.jsonl").exists() for t in tasks)
    if previous and previous.get("fingerprint") == fingerprint and finals_exist:
        # nothing changed since the last complete run: keep its step-2 results
        report.records_kept = previous["records_kept"]
        report.dropped.update({k: v for k, v in previous["step2_dropped"].items()})
        step2 = previous["step2_dropped"]
    else:
        kept, step2_counter = reconcile(stage_dir, out_dir, metas, cfg, progress=pipe.progress)
        report.records_kept = kept
        report.dropped.update(step2_counter)
        step2 = dict(step2_counter)
    doc = report.to_dict()
    doc.update(
        fingerprint=fingerprint,
        step2_dropped=step2,
        config=cfg.to_dict(),
        format=pipe.format,
        skip_bad=pipe.skip_bad,
        output_shards=[f"{t.stem}.jsonl" for t in tasks],
    )
    write_json_atomic(report_path, doc)
    return report


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
