"""Benchmark tools/preprocess_data.py against a plain Hugging Face + megatron-core baseline.

Builds a ~100 MB JSONL from the shared PubMed abstracts (repeated), trains (or reuses) a
28,896-token BPE on them, then runs as subprocesses, so start-up counts:

  (a) ours:     tools/preprocess_data.py --workers 2 --append-eod
  (b) baseline: one process, ``tokenizers`` ``encode_batch`` + megatron-core ``IndexedDatasetBuilder``

and prints whole-process wall time, MB/s, peak RSS (summed over the process tree) and the
ratio. Also checks that both wrote the same bytes.

    python benchmarks/preprocess.py [--mb 100] [--workers 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PUBMED = ROOT.parent / "shared" / "data" / "pubmed_abstracts" / "combined" / "pubmed_abstracts_shared.jsonl"

BASELINE = r'''
import json, sys
import torch
from megatron.core.datasets.indexed_dataset import DType, IndexedDatasetBuilder
from tokenizers import Tokenizer

src, tokdir, prefix = sys.argv[1:4]
tok = Tokenizer.from_file(tokdir + "/tokenizer.json")
eod = tok.token_to_id("<|endoftext|>")
builder = IndexedDatasetBuilder(prefix + ".bin", dtype=DType.optimal_dtype(tok.get_vocab_size()))

def flush(texts):
    for enc in tok.encode_batch(texts, add_special_tokens=False):
        ids = enc.ids + [eod]
        builder.add_document(torch.tensor(ids, dtype=torch.int64), [len(ids)])

batch = []
with open(src, encoding="utf-8") as f:
    for line in f:
        batch.append(json.loads(line)["text"])
        if len(batch) == 1024:
            flush(batch)
            batch = []
flush(batch)
builder.finalize(prefix + ".idx")
'''


def build_corpus(path: Path, target_mb: float) -> int:
    """Write ~target_mb of {"text": title + abstract} lines, repeating the shared abstracts."""
    docs = []
    with open(PUBMED, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            text = " ".join(x for x in (r.get("title"), r.get("abstract")) if x).strip()
            if text:
                docs.append((json.dumps({"text": text}) + "\n").encode())
    size = 0
    with open(path, "wb") as f:
        while size < target_mb * 1e6:
            for d in docs:
                f.write(d)
                size += len(d)
    return size


def tokenizer_dir(vocab_size: int) -> Path:
    """Train a BPE on the shared abstracts once; cached by the data file's size and vocab."""
    from megatron_biomed.data.jsonl import JsonlReadConfig, expand_inputs, iter_texts
    from megatron_biomed.tokenizer import TokenizerTrainConfig, train_bpe_tokenizer

    key = hashlib.sha256(f"{PUBMED.stat().st_size}-{vocab_size}-v1".encode()).hexdigest()[:12]
    cache = Path(os.environ.get("MEGATRON_BIOMED_CACHE") or Path.home() / ".cache" / "megatron_biomed")
    out = cache / f"bench_tokenizer_{key}"
    if not (out / "tokenizer.json").is_file():
        cfg = JsonlReadConfig(json_keys=("title", "abstract"), skip_bad=True)
        tmp = out.with_name(out.name + f".tmp{os.getpid()}")
        train_bpe_tokenizer(iter_texts(expand_inputs(str(PUBMED)), cfg),
                            TokenizerTrainConfig(vocab_size=vocab_size), tmp)
        os.replace(tmp, out)
    return out


def run_measured(cmd: list[str], env: dict | None = None) -> tuple[float, float, float, subprocess.CompletedProcess]:
    """Wall seconds, peak RSS (MB, summed over the process and its children, sampled) and CPU
    seconds (user + system of the process and every descendant it waited for)."""
    import resource

    import psutil

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak = [0]

    def sample() -> None:
        try:
            p = psutil.Process(proc.pid)
            while proc.poll() is None:
                total = 0
                for q in [p, *p.children(recursive=True)]:
                    try:
                        total += q.memory_info().rss
                    except psutil.Error:
                        pass
                peak[0] = max(peak[0], total)
                time.sleep(0.02)
        except psutil.Error:
            pass

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    th.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, peak[0] / 1e6, cpu, subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=100.0, help="corpus size in MB")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--vocab-size", type=int, default=28896)
    ap.add_argument("--keep", help="work in this directory and keep it")
    ap.add_argument("--also-hf-backend", action="store_true",
                    help="add a row: ours with --tokenizer-backend hf (pipeline gain without gigatoken)")
    args = ap.parse_args()
    if not PUBMED.is_file():
        print(f"shared PubMed abstracts not found at {PUBMED}", file=sys.stderr)
        return 2
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_preprocess_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        corpus = work / "corpus.jsonl"
        nbytes = build_corpus(corpus, args.mb)
        tok = tokenizer_dir(args.vocab_size)
        (work / "baseline.py").write_text(BASELINE)
        env = dict(os.environ, OMP_NUM_THREADS="1")
        runs = {}
        runs["baseline"] = run_measured([sys.executable, str(work / "baseline.py"), str(corpus), str(tok),
                                         str(work / "base")], env)
        runs["ours"] = run_measured([sys.executable, "tools/preprocess_data.py", "--input", str(corpus),
                                     "--json-keys", "text", "--tokenizer", str(tok), "--output-prefix",
                                     str(work / "ours"), "--workers", str(args.workers), "--append-eod",
                                     "--no-progress"], env)
        if args.also_hf_backend:
            runs["ours_hf"] = run_measured([sys.executable, "tools/preprocess_data.py", "--input", str(corpus),
                                            "--json-keys", "text", "--tokenizer", str(tok), "--output-prefix",
                                            str(work / "ours_hf"), "--workers", str(args.workers),
                                            "--append-eod", "--no-progress", "--tokenizer-backend", "hf"], env)
        for name, (_, _, _, r) in runs.items():
            if r.returncode != 0:
                print(f"{name} failed:\n{r.stderr[-3000:]}", file=sys.stderr)
                return 1
        same = all((work / f"base{e}").read_bytes() == (work / f"{name}_text_document{e}").read_bytes()
                   for e in (".bin", ".idx") for name in runs if name != "baseline")
        backend = next((ln.split("backend ")[1].split(")")[0] for ln in runs["ours"][3].stdout.splitlines()
                        if "backend " in ln), "?")
        mb = nbytes / 1e6
        print(f"corpus: {mb:.1f} MB JSONL ({corpus}); tokenizer: {tok} ({args.vocab_size} tokens); "
              f"cpus: {os.cpu_count()}; load average at the end: {os.getloadavg()[0]:.1f}")
        print("| run | wall s | MB/s | peak RSS MB | CPU s | speed-up (wall) | CPU ratio |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        labels = {"baseline": "baseline: HF tokenizers encode_batch + megatron-core IndexedDatasetBuilder, 1 process",
                  "ours": f"ours: tools/preprocess_data.py --workers {args.workers} (backend {backend})",
                  "ours_hf": f"ours, --tokenizer-backend hf --workers {args.workers}"}
        for name, (wall, rss, cpu, _) in runs.items():
            ratio, cpu_ratio = runs["baseline"][0] / wall, runs["baseline"][2] / max(cpu, 1e-9)
            print(f"| {labels[name]} | {wall:.2f} | {mb / wall:.1f} | {rss:.0f} | {cpu:.1f} | {ratio:.1f}x "
                  f"| {cpu_ratio:.1f}x |")
        print(f"speed-up = baseline wall / run wall; CPU ratio = baseline CPU s / run CPU s (less "
              f"sensitive to other load on the machine); outputs byte-identical to the baseline's: {same}")
        return 0 if same else 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
