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
from megatron_biomed.data.readers import READERS, get_reader
from megatron_biomed.data.sharding import commit, tmp_path


def duplicate_reason(fmt: str) -> str:
    """How a retired copy of a key is counted: the reader's ``duplicate_reason`` (MEDLINE: ``superseded``)."""
    return get_reader(fmt).duplicate_reason if fmt in READERS else "duplicate_id"


def drop_decisions(metas: list[dict], cfg: CleaningConfig) -> dict[tuple[int, int], str]:
    """``{(file position, line): reason}`` for step-1 lines retired by versions/deletions/PMID."""
    live: dict[int, tuple[int, int, int]] = {}  # key -> (file position, line, rank); line -1: filtered out
    drops: dict[tuple[int, int], str] = {}
    for pos, meta in enumerate(metas):
        dup_reason = duplicate_reason(meta["format"])
        for event in meta["events"]:
            kind, key, line = event[:3]
            # a reader's rank (e.g. a last-update date) orders copies of one key; equal ranks: the later copy wins
            rank = event[3] if len(event) > 3 else 0
            if key is None:
                continue
            old = live.get(key)
            if kind == "d":
                if old is not None:
                    if old[1] >= 0:
                        drops[old[:2]] = "deleted"
                    del live[key]
                continue
            if cfg.dedup_pmid:
                if old is not None and rank < old[2]:
                    if line >= 0:
                        drops[(pos, line)] = dup_reason  # an older copy read after a newer one
                    continue
                if old is not None and old[1] >= 0:
                    drops[old[:2]] = dup_reason
                live[key] = (pos, line, rank)
            elif old is None:
                live[key] = (pos, line, rank)  # remembered only so a later deletion can find it
    if cfg.dedup_pmid:
        # a newer Version of a MEDLINE citation retires the older versions (see readers.medline_key: the
        # version is in the key's low bits); other sources' keys carry no version
        medline = {key: v for key, v in live.items() if metas[v[0]]["format"] == "medline"}
        best: dict[int, int] = {}
        for key in medline:
            base = key >> 8
            if base not in best or key > best[base]:
                best[base] = key
        for key, (pos, line, _rank) in medline.items():
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
