"""Benchmark the preprocessing pipeline as Slurm job arrays against the single-node tools.

Corpus: ``--mb`` MB of PubMed-format JSONL (``pmid``, ``title``, ``abstract``, ``text``) made by repeating the shared
PubMed abstracts (../shared/data/pubmed_abstracts/combined/). Copy 0 is the real abstract; each later copy replaces
one word in four with a word drawn from the corpus (seeded per copy), which changes nearly every 5-word shingle, so
MinHash (Jaccard >= 0.8) keeps it; on top, 3% of the records are exact repeats of an earlier record's text and 5%
are near repeats (one word changed), so both dedup stages have work to do. Cut into ``--files`` files.

Runs, on the same corpus and tokenizer (28,896-token BPE trained on the shared abstracts, benchmarks/preprocess.py):
  (a) single node: tools/pubmed_to_jsonl.py --near-dup, then tools/preprocess_data.py --workers 1 (each under
      /usr/bin/time -v: wall, peak RSS);
  (b) tools/preprocess_pipeline.py --near-dup on a real local Slurm (tests/slurm_cluster.py start()) at 1, 2 and 4
      array tasks: wall from the first sbatch to the last marker, tokens/s, the merge time (slowest merge task),
      per-task seconds and peak RSS (ru_maxrss of each task process, from its completion marker);
and checks that (b) wrote the same bytes as (a). Ends with a projection to 4T tokens on N nodes from the measured
per-task throughput of the parallel stages, with the single-task stages (decide, near) listed apart.

    python benchmarks/preprocess_pipeline.py [--mb 100] [--files 16] [--tasks 1 2 4] [--keep DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
PUBMED = ROOT.parent / "shared" / "data" / "pubmed_abstracts" / "combined" / "pubmed_abstracts_shared.jsonl"
PARALLEL = ("convert", "signatures", "buckets", "tokenize", "merge")
SERIAL = ("decide", "near")  # publish: O(tasks) marker reads, not per token; left out


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_corpus(out: Path, target_mb: float, n_files: int, seed: int = 0) -> tuple[int, int]:
    base = [json.loads(line) for line in PUBMED.open(encoding="utf-8")]
    base = [b for b in base if b.get("abstract")]
    vocab = sorted({w for b in base[:500] for w in b["abstract"].split()})
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    target = int(target_mb * 1e6)
    records, written, copy = [], 0, 0
    while written < target:
        r = random.Random(f"{seed}-{copy}")
        for i, b in enumerate(base):
            words = b["abstract"].split()
            if copy:
                words = [r.choice(vocab) if j % 4 == (i + copy) % 4 else w for j, w in enumerate(words)]
            abstract = " ".join(words)
            u = rng.random()
            if u < 0.03 and records:
                abstract = json.loads(records[rng.randrange(len(records))])["abstract"]  # exact repeat
            elif u < 0.08 and records:
                prev = json.loads(records[rng.randrange(len(records))])["abstract"].split()
                prev[len(prev) // 2] = "altered"
                abstract = " ".join(prev)  # near repeat
            title = b.get("title") or ""
            rec = {"pmid": str(copy * 10_000_000 + i + 1), "title": title, "abstract": abstract,
                   "text": title + "\n" + abstract}
            line = json.dumps(rec, ensure_ascii=False)
            records.append(line)
            written += len(line.encode()) + 1
            if written >= target:
                break
        copy += 1
    per = -(-len(records) // n_files)
    for f in range(n_files):
        chunk = records[f * per:(f + 1) * per]
        (out / f"pubmed_bench_{f:04d}.jsonl").write_text("".join(x + "\n" for x in chunk), encoding="utf-8")
    return len(records), written


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, int, str]:
    """(wall seconds, peak RSS KB, output) of one command under /usr/bin/time -v."""
    t0 = time.time()
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.time() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    return wall, rss, proc.stdout


def run_pipeline_on_slurm(slurm, work: Path, corpus: Path, tok: Path, tasks: int) -> dict:
    from megatron_biomed.data.jobs import load_spec, plan
    from megatron_biomed.data.jobs.markers import read_marker

    cmd = [sys.executable, "tools/preprocess_pipeline.py", "--input", str(corpus), "--work-dir", str(work),
           "--output-prefix", str(work / "out"), "--tokenizer", str(tok), "--append-eod", "--near-dup",
           "--tasks", str(tasks), "--executor", "slurm", "--partition", "debug", "--wait", "--job-name", "bench"]
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, env=slurm.env, capture_output=True, text=True)
    wall = time.time() - t0
    if proc.returncode != 0:
        raise SystemExit(f"pipeline at {tasks} tasks failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    spec = load_spec(work)
    stages = {}
    for sp in plan(spec).stages:
        ms = [read_marker(work, sp.name, k) for k in range(sp.tasks)]
        stages[sp.name] = {"tasks": sp.tasks, "seconds": [m["seconds"] for m in ms],
                           "rss_mb": [m["max_rss_kb"] / 1024 for m in ms]}
    tok_markers = [read_marker(work, "tokenize", k) for k in range(tasks)]
    merge = max(read_marker(work, "merge", k)["merge_seconds"] for k in range(tasks))
    return {"wall": wall, "stages": stages, "tokens": sum(m["tokens"] for m in tok_markers),
            "merge_seconds": merge, "prefix": str(work / "out_text_document")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=100.0)
    ap.add_argument("--files", type=int, default=16)
    ap.add_argument("--tasks", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--keep", type=Path, help="work here and keep it (default: a temporary directory)")
    ap.add_argument("--nodes", type=int, nargs="+", default=[16, 64, 256])
    ap.add_argument("--cores-per-node", type=int, default=64)
    args = ap.parse_args()
    if not PUBMED.is_file():
        print(f"skipped: the shared PubMed abstracts are not at {PUBMED}")
        return 0
    import slurm_cluster

    work = args.keep or Path(tempfile.mkdtemp(prefix="bench_pipeline_"))
    work.mkdir(parents=True, exist_ok=True)
    corpus = work / "corpus"
    if not corpus.is_dir():
        n, nbytes = build_corpus(corpus, args.mb, args.files)
    else:
        n, nbytes = sum(1 for p in corpus.glob("*.jsonl") for _ in p.open()), sum(
            p.stat().st_size for p in corpus.glob("*.jsonl"))
    tok = _load(ROOT / "benchmarks" / "preprocess.py", "bench_preprocess").tokenizer_dir(28896)
    print(f"corpus: {n:,} records, {nbytes / 1e6:.1f} MB in {args.files} files; tokenizer {tok}")

    ref = work / "single"
    shutil.rmtree(ref, ignore_errors=True)
    w1, r1, _ = timed([sys.executable, "tools/pubmed_to_jsonl.py", "--input", str(corpus), "--output-dir",
                       str(ref / "jsonl"), "--near-dup", "--no-progress"])
    w2, r2, out2 = timed([sys.executable, "tools/preprocess_data.py", "--input", str(ref / "jsonl" / "*.jsonl"),
                          "--tokenizer", str(tok), "--output-prefix", str(ref / "ref"), "--workers", "1",
                          "--append-eod", "--no-progress"])
    tokens = int(re.search(r"docs, ([\d,]+) tokens", out2).group(1).replace(",", ""))
    rows = [("single node (2 tools, 1 process each)", w1 + w2, tokens / (w1 + w2), "-", f"{max(r1, r2) / 1024:.0f}",
             f"pubmed_to_jsonl {w1:.1f}s + preprocess_data {w2:.1f}s")]
    slurm = slurm_cluster.start(work / "slurm")
    results = {}
    try:
        for tasks in args.tasks:
            pw = work / f"pipeline_{tasks}"
            shutil.rmtree(pw, ignore_errors=True)
            res = run_pipeline_on_slurm(slurm, pw, corpus, tok, tasks)
            results[tasks] = res
            for ext in (".bin", ".idx"):
                same = Path(res["prefix"] + ext).read_bytes() == (ref / f"ref_text_document{ext}").read_bytes()
                if not same:
                    raise SystemExit(f"{res['prefix']}{ext} differs from the single-node tools' output")
            per_task = ", ".join(f"{s} {max(v['seconds']):.1f}s/{max(v['rss_mb']):.0f}MB"
                                 for s, v in res["stages"].items())
            rows.append((f"pipeline, {tasks} array task(s), Slurm", res["wall"], res["tokens"] / res["wall"],
                         f"{res['merge_seconds']:.2f}", f"{max(max(v['rss_mb']) for v in res['stages'].values()):.0f}",
                         f"slowest task/peak RSS per stage: {per_task}"))
    finally:
        slurm.stop()
    print("\nall pipeline outputs byte-identical to the single-node tools' (.bin and .idx)\n")
    print("| run | wall s | tokens/s | merge s | peak RSS per task MB | detail |")
    print("|---|---:|---:|---:|---:|---|")
    for name, wall, tps, merge, rss, detail in rows:
        print(f"| {name} | {wall:.1f} | {tps:,.0f} | {merge} | {rss} | {detail} |")

    # projection: the parallel stages' task-seconds per token (summed over tasks: what one core-task costs),
    # and the single-task stages' seconds per token (they do not shrink with nodes)
    best = results[max(results)]
    par = sum(sum(best["stages"][s]["seconds"]) for s in PARALLEL if s in best["stages"]) / best["tokens"]
    ser = {s: sum(best["stages"][s]["seconds"]) / best["tokens"] for s in SERIAL if s in best["stages"]}
    total = 4e12
    print(f"\nprojection to 4T tokens from the {max(results)}-task run: parallel stages {1 / par:,.0f} tokens/s per "
          f"task (one core), single-task stages {', '.join(f'{s} {1 / v:,.0f} tokens/s' for s, v in ser.items())}")
    print("| nodes x cores | parallel stages (h) | single-task stages at measured speed (h) | total (h) |")
    print("|---|---:|---:|---:|")
    for nodes in args.nodes:
        cores = nodes * args.cores_per_node
        p_h = total * par / cores / 3600
        s_h = total * sum(ser.values()) / 3600
        print(f"| {nodes} x {args.cores_per_node} | {p_h:,.1f} | {s_h:,.1f} | {p_h + s_h:,.1f} |")
    print(json.dumps({str(k): {kk: vv for kk, vv in v.items() if kk != "prefix"} for k, v in results.items()}))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
