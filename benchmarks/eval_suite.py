"""Benchmark the evaluation suite: one ``tools/evaluate.py --suite`` run against the same tasks run one by one.

Tiny model (tiny-biomedlm, the toy tokenizer and data of tests/toydata.py; its mc head fine-tuned 3 steps first):

  (a) ours:     ONE ``tools/evaluate.py --suite`` process: a zero-shot benchmark (pubmedqa), a second one (medqa),
                a fine-tuned head (mc), a generation task (pubmedqa_generative) and a perplexity corpus; the body
                loaded once for the four body entries, the head's checkpoint once;
  (b) baseline: the same five tasks, one ``tools/evaluate.py`` process each (``--benchmark`` / ``--corpus`` /
                ``--head``), as they were run before ``--suite``: the sum of their wall times.

Both score the same items with the same batches (the script checks that every metric agrees). Items/s per task type:
scored items over the suite's scoring time of those entries (the report's ``scoring_seconds``, model load not
counted), and over the wall time of the one-by-one processes (start, load and scoring).

    OMP_NUM_THREADS=1 python benchmarks/eval_suite.py [--items 64 --nproc 1 --rounds 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

EVALUATE = ROOT / "tools" / "evaluate.py"
FT_SETS = ["train.train_iters=3", "train.global_batch_size=8", "train.micro_batch_size=2", "train.eval_iters=0",
           "train.precision=fp32", "optimizer.lr=1e-3", "optimizer.lr_warmup_iters=0",
           "optimizer.lr_decay_style=constant", "task.max_seq_length=32"]  # fmt: skip


def _setup(work: Path, items: int) -> dict:
    from launch import FINETUNE, run_tool
    from toydata import make_toy, mc_items, pubmedqa_items, write_jsonl

    toy = make_toy(work)
    files = {
        "pubmedqa": work / "pqa.json",
        "medqa": write_jsonl(work / "mcq.jsonl", mc_items(items, 7)),
        "corpus": write_jsonl(
            work / "corpus.jsonl", [{"text": "the red cat saw the blue dog. " * (3 + i % 9)} for i in range(items)]
        ),  # fmt: skip
    }
    files["pubmedqa"].write_text(json.dumps(pubmedqa_items(items, 9)))
    ft = work / "mc"
    argv = ["--task", "mc", "--init-from", str(toy["pretrained"]), "--train-file", str(toy["mc_train"]),
            "--format", "medqa", "--save", str(ft)] + [a for s in FT_SETS for a in ("--set", s)]  # fmt: skip
    run_tool(FINETUNE, 1, argv, work)
    entries = [
        {"name": "pubmedqa", "benchmark": "pubmedqa", "files": {"test": str(files["pubmedqa"])}},
        {"name": "medqa", "benchmark": "medqa", "files": {"test": str(files["medqa"])}},
        {"name": "medqa_head", "head": "mc", "format": "medqa", "files": {"test": str(files["medqa"])},
         "load": str(ft)},
        {"name": "pubmedqa_gen", "generation": "pubmedqa_generative", "files": {"test": str(files["pubmedqa"])}},
        {"name": "toy_text", "perplexity": "text", "files": {"test": str(files["corpus"])}},
    ]  # fmt: skip
    suite = work / "suite.yaml"
    suite.write_text(yaml.safe_dump({"name": "bench", "entries": entries}))
    load = ["--load", str(toy["pretrained"])]
    singles = {  # the one-by-one runs: tools/evaluate.py arguments per suite entry
        "pubmedqa": load + ["--benchmark", f"pubmedqa={files['pubmedqa']}"],
        "medqa": load + ["--benchmark", f"medqa={files['medqa']}"],
        "medqa_head": ["--load", str(ft), "--head", "mc", "--test-file", str(files["medqa"])],
        "pubmedqa_gen": load + ["--benchmark", f"pubmedqa_generative={files['pubmedqa']}"],
        "toy_text": load + ["--corpus", f"toy_text={files['corpus']}"],
    }
    return {"suite": suite, "load": load, "singles": singles}


def _timed(args: list[str], work: Path, nproc: int, out: Path) -> tuple[float, dict]:
    from launch import run_tool

    t0 = time.perf_counter()
    run_tool(EVALUATE, nproc, args + ["--no-progress", "--output", str(out)], work)
    return time.perf_counter() - t0, json.loads(out.read_text())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--items", type=int, default=64, help="items (documents) per task")
    p.add_argument("--nproc", type=int, default=1, help="ranks of every run (data parallel)")
    p.add_argument("--rounds", type=int, default=2, help="runs of each; the table shows the median")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        s = _setup(work, args.items)
        suite_walls, single_walls, scoring = [], {k: [] for k in s["singles"]}, {k: [] for k in s["singles"]}
        for r in range(args.rounds):  # alternating, so that a busy moment of the machine hits both
            wall, report = _timed(["--suite", str(s["suite"]), *s["load"]], work, args.nproc, work / f"suite{r}.json")
            suite_walls.append(wall)
            for name, secs in report["scoring_seconds"].items():
                scoring[name].append(secs)
            single = {}
            for name, a in s["singles"].items():
                wall, rep = _timed(a, work, args.nproc, work / f"{name}{r}.json")
                single_walls[name].append(wall)
                single[name] = rep["results"]
            _check_same(report, single)
    entries = {e["name"]: e for e in report["entries"]}
    _table(entries, statistics.median(suite_walls), {k: statistics.median(v) for k, v in single_walls.items()},
           {k: statistics.median(v) for k, v in scoring.items()}, args)  # fmt: skip
    return 0


def _check_same(report: dict, single: dict) -> None:
    for e in report["entries"]:
        got = {m["metric"]: m["value"] for m in e["metrics"]}
        want = {r["metric"]: r["value"] for r in single[e["name"]]}
        if got != want:
            raise SystemExit(f"{e['name']}: the suite scored {got}, the single run {want}")


def _table(entries: dict, suite_wall: float, single_walls: dict, scoring: dict, args) -> None:
    print(f"\nsuite of {len(entries)} tasks, {args.items} items each, tiny-biomedlm, {args.nproc} rank(s), "
          f"median of {args.rounds}")  # fmt: skip
    head = (f"{'entry':<14} {'type':<11} {'n':>5} {'suite scoring s':>16} {'items/s':>9} {'one-by-one s':>13} "
            f"{'items/s':>9}")  # fmt: skip
    print(head + "\n" + "-" * len(head))
    for name, e in entries.items():
        n = e["n"] if e["type"] != "perplexity" else args.items  # perplexity's n counts tokens; items = documents
        print(f"{name:<14} {e['type']:<11} {n:>5} {scoring[name]:>16.2f} {n / scoring[name]:>9.1f} "
              f"{single_walls[name]:>13.2f} {n / single_walls[name]:>9.1f}")  # fmt: skip
    print("-" * len(head))
    types: dict[str, list[str]] = {}
    for name, e in entries.items():
        types.setdefault(e["type"], []).append(name)
    for kind, names in types.items():
        n = sum(entries[x]["n"] if kind != "perplexity" else args.items for x in names)
        sc, sw = sum(scoring[x] for x in names), sum(single_walls[x] for x in names)
        print(f"{'type ' + kind:<26} {n:>5} {sc:>16.2f} {n / sc:>9.1f} {sw:>13.2f} {n / sw:>9.1f}")
    total = sum(single_walls.values())
    print(f"\nwall time: suite {suite_wall:.1f} s (one process) vs one by one {total:.1f} s "
          f"({len(single_walls)} processes): {total / suite_wall:.2f}x")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
