"""Step 2 of the pipeline: decisions that need every file, then the final shards.

Reads the step-1 summaries in file-name order (baseline before updates, older updates before
newer) and

1. applies versions and deletions: per PMID the highest ``Version`` wins, and for the same
   version the later file (NLM re-issues a revised citation in an update file); a
   ``<DeleteCitation>`` retires every copy read before it. Dropped as ``superseded`` /
   ``deleted`` (PMC articles repeated across packages: ``duplicate_pmid``).
2. drops exact duplicates of the normalized text (``duplicate_text``) and, when enabled,
   near duplicates (``near_duplicate``), keeping the first copy in file order;
3. writes ``<output-dir>/<stem>.jsonl`` for every input, each via a temporary name.

Memory: one dict entry per PMID and one 64-bit hash per kept record (a few GB for all of
PubMed); near-duplicate LSH holds a MinHash per kept record and is meant for smaller corpora.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from megatron_biomed.data.cleaning.config import CleaningConfig
from megatron_biomed.data.cleaning.dedup import ExactDeduper, NearDuplicateIndex
from megatron_biomed.data.sharding import commit, tmp_path


def drop_decisions(metas: list[dict], cfg: CleaningConfig) -> dict[tuple[int, int], str]:
    """``{(file position, line): reason}`` for step-1 lines retired by versions/deletions/PMID."""
    live: dict[int, tuple[int, int]] = {}  # key -> (file position, line); line -1: filtered out
    drops: dict[tuple[int, int], str] = {}
    for pos, meta in enumerate(metas):
        dup_reason = "superseded" if meta["format"] == "medline" else "duplicate_pmid"
        for kind, key, line in meta["events"]:
            if key is None:
                continue
            old = live.get(key)
            if kind == "d":
                if old is not None:
                    if old[1] >= 0:
                        drops[old] = "deleted"
                    del live[key]
                continue
            if cfg.dedup_pmid:
                if old is not None and old[1] >= 0:
                    drops[old] = dup_reason
                live[key] = (pos, line)
            elif old is None:
                live[key] = (pos, line)  # remembered only so a later deletion can find it
    if cfg.dedup_pmid:
        # a newer Version of a citation retires the older versions (see convert.medline_key)
        best: dict[int, int] = {}
        for key in live:
            base = key >> 8
            if base not in best or key > best[base]:
                best[base] = key
        for key, (pos, line) in live.items():
            if best[key >> 8] != key and line >= 0:
                drops[(pos, line)] = "superseded"
    return drops


def reconcile(
    stage_dir: Path, out_dir: Path, metas: list[dict], cfg: CleaningConfig, progress: bool = True
) -> tuple[int, Counter]:
    """Write the final shards; returns (records kept, dropped counts by reason)."""
    drops = drop_decisions(metas, cfg)
    dropped: Counter = Counter(drops.values())
    exact = ExactDeduper() if cfg.dedup_exact else None
    near = (
        NearDuplicateIndex(cfg.near_dup_threshold, cfg.near_dup_num_perm, cfg.near_dup_shingle)
        if cfg.near_dup
        else None
    )
    kept = 0
    for pos, meta in enumerate(tqdm(metas, desc="reconcile", unit="file", disable=not progress)):
        final = out_dir / f"{meta['stem']}.jsonl"
        tmp = tmp_path(final)
        with open(stage_dir / f"{meta['stem']}.jsonl", encoding="utf-8") as src, open(
            tmp, "w", encoding="utf-8"
        ) as dst:
            for line_no, line in enumerate(src):
                if (pos, line_no) in drops:
                    continue
                if exact is not None or near is not None:
                    text = json.loads(line)["text"]
                    if exact is not None and exact.seen_before(text):
                        dropped["duplicate_text"] += 1
                        continue
                    if near is not None and near.seen_before(text):
                        dropped["near_duplicate"] += 1
                        continue
                dst.write(line)
                kept += 1
        commit(tmp, final)
    return kept, dropped
