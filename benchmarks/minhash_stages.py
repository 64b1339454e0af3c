"""MinHash near-dedup: the stages (signatures, buckets, keep-first clustering) against the single-process
``NearDuplicateIndex`` (the baseline) on PubMed abstracts with planted near copies.

The shared PubMed abstracts (``../shared/data/pubmed_abstracts``) are repeated to ``--docs`` documents,
each repeat with 1-4 words changed, so about ``1 - 1/repeats`` of the corpus are near copies. Stages run
one after the other in this process (as one task each, then ``--tasks`` signature files and ``--groups``
band groups); the table gives the time per stage, docs/s, the bytes per document of each file kind, and
whether the staged drops equal the sequential ones.

    OMP_NUM_THREADS=1 python benchmarks/minhash_stages.py [--docs 20000 --tasks 4 --groups 3]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from megatron_biomed.data.cleaning.dedup import NearDuplicateIndex  # noqa: E402
from megatron_biomed.data.cleaning.minhash import (  # noqa: E402
    MinHashParams,
    band_groups,
    find_duplicates,
    read_duplicate_array,
    write_buckets,
    write_signatures,
)

PUBMED = ROOT.parent / "shared" / "data" / "pubmed_abstracts" / "combined" / "pubmed_abstracts_shared.jsonl"


def corpus(n: int, seed: int = 0) -> list[str]:
    with open(PUBMED, encoding="utf-8") as f:
        base = [f"{d.get('title') or ''}\n{d.get('abstract') or ''}" for d in map(json.loads, f)]
    rng = random.Random(seed)
    texts = list(base[:n])
    while len(texts) < n:
        words = base[rng.randrange(len(base))].split()
        for _ in range(rng.randint(1, 4)):
            words[rng.randrange(len(words))] = f"edit{rng.randrange(1000)}"
        texts.append(" ".join(words))
    rng.shuffle(texts)
    return texts


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=20000)
    ap.add_argument("--tasks", type=int, default=4)
    ap.add_argument("--groups", type=int, default=3)
    args = ap.parse_args(argv)
    if not PUBMED.exists():
        sys.exit(f"needs the shared PubMed abstracts at {PUBMED}")
    texts = corpus(args.docs)
    p = MinHashParams()
    mb = sum(len(t.encode()) for t in texts) / 1e6
    rows = []

    t0 = time.perf_counter()
    idx = NearDuplicateIndex(p.threshold, p.num_perm, p.shingle, p.seed)
    want = [i for i, t in enumerate(texts) if idx.seen_before(t)]
    rows.append(("sequential NearDuplicateIndex", time.perf_counter() - t0, None))

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        t0 = time.perf_counter()
        sigs = []
        for t in range(args.tasks):
            sp = d / f"sig{t}.mhsig"
            part = range(t * len(texts) // args.tasks, (t + 1) * len(texts) // args.tasks)
            write_signatures(((i, texts[i]) for i in part), sp, p)
            sigs.append(sp)
        rows.append((f"signatures ({args.tasks} files)", time.perf_counter() - t0, sigs))
        t0 = time.perf_counter()
        bkts = []
        for g, bands in enumerate(band_groups(p.bands, args.groups)):
            bp = d / f"bkt{g}.mhbkt"
            write_buckets(sigs, bands, bp, p)
            bkts.append(bp)
        rows.append((f"buckets ({args.groups} band groups)", time.perf_counter() - t0, bkts))
        t0 = time.perf_counter()
        find_duplicates(bkts, d / "dups.mhdup")
        rows.append(("find_duplicates (keep-first)", time.perf_counter() - t0, [d / "dups.mhdup"]))
        got = read_duplicate_array(d / "dups.mhdup").tolist()
        print(f"{len(texts)} docs, {mb:.1f} MB, threshold {p.threshold}, num_perm {p.num_perm}, "
              f"{p.bands} bands x {p.rows} rows; dropped: sequential {len(want)}, staged {len(got)}, "
              f"same set: {got == want}")
        print(f"| {'step':38s} | {'s':>7s} | {'docs/s':>9s} | {'file bytes/doc':>14s} |")
        print(f"|{'-' * 40}|{'-' * 9}|{'-' * 11}|{'-' * 16}|")
        for name, sec, files in rows:
            size = f"{sum(f.stat().st_size for f in files) / len(texts):.1f}" if files else "-"
            print(f"| {name:38s} | {sec:7.2f} | {len(texts) / sec:9.0f} | {size:>14s} |")
        staged = sum(r[1] for r in rows[1:])
        print(f"stages together: {staged:.2f} s ({len(texts) / staged:.0f} docs/s, {mb / staged:.2f} MB/s)")


if __name__ == "__main__":
    main()
