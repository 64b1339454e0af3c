"""tools/evaluate.py end to end: the same scores at TP1 and TP2 x PP2, chance on a shuffled task, clear errors."""

from __future__ import annotations

import json
import math

from launch import ROOT, run_finetune, run_tool
from toydata import FT_BASE, mc_items, task_args, write_jsonl

EVALUATE = ROOT / "tools" / "evaluate.py"
TP2PP2 = ["--set", "parallel.tensor_model_parallel_size=2", "--set", "parallel.pipeline_model_parallel_size=2"]


def _corpus(tmp_path):
    rows = [{"text": "the red cat saw the blue dog. " * (3 + i)} for i in range(6)]
    return write_jsonl(tmp_path / "corpus.jsonl", rows)


def test_same_scores_at_tp1_and_tp2_pp2(toy, tmp_path):
    """Perplexity, a benchmark and a fine-tuned head, from one checkpoint, evaluated in two layouts."""
    ckpt = tmp_path / "mc"
    run_finetune(1, task_args(toy, "mc") + ["--save", str(ckpt)], FT_BASE + ["train.train_iters=3"], tmp_path)
    args = ["--load", str(ckpt), "--corpus", f"toy={_corpus(tmp_path)}", "--benchmark", f"pubmedqa={toy['pubmedqa']}",
            "--benchmark", f"medqa={toy['mc_valid']}", "--head", "mc", "--test-file", str(toy["mc_valid"]),
            "--no-progress", "--set", "train.micro_batch_size=4"]  # fmt: skip
    reports, tables = {}, {}
    for name, nproc, layout in (("tp1", 1, []), ("tp2pp2", 4, TP2PP2)):
        out = tmp_path / f"{name}.json"
        proc = run_tool(EVALUATE, nproc, args + layout + ["--output", str(out)], tmp_path)
        reports[name] = json.loads(out.read_text())
        tables[name] = [line for line in proc.stdout.splitlines() if line.startswith(("toy ", "pubmedqa", "medqa"))]
    a, b = reports["tp1"]["results"], reports["tp2pp2"]["results"]
    assert [(r["task"], r["metric"]) for r in a] == [(r["task"], r["metric"]) for r in b]
    metrics = {(r["task"], r["metric"]) for r in a}
    assert {("toy", "perplexity"), ("toy", "bits_per_byte"), ("pubmedqa", "acc"), ("medqa", "acc_norm"),
            ("medqa:mc", "acc")} <= metrics  # fmt: skip
    for x, y in zip(a, b):
        assert abs(x["value"] - y["value"]) <= 1e-6 * max(1.0, abs(y["value"])), (x, y)
        assert x["n"] == y["n"]
    assert tables["tp1"] == tables["tp2pp2"] and len(tables["tp1"]) >= 6  # the same to the last printed digit
    row = a[0]
    assert row["iteration"] == 3 and row["checkpoint"].endswith("iter_0000003") and len(row["config_hash"]) == 16


def test_random_model_scores_at_chance_on_a_shuffled_task(toy, tmp_path):
    """The untrained checkpoint on 200 questions whose answers are shuffled across A-D: accuracy within three
    standard errors of 1/4 (scoring cannot leak the answer through option order or length)."""
    items = write_jsonl(tmp_path / "q.jsonl", mc_items(200, 11))
    out = tmp_path / "r.json"
    run_tool(EVALUATE, 1, ["--load", str(toy["pretrained"]), "--benchmark", f"medqa={items}", "--no-progress",
                           "--output", str(out)], tmp_path)  # fmt: skip
    res = {r["metric"]: r for r in json.loads(out.read_text())["results"]}
    n = res["acc"]["n"]
    assert n == 200
    se = math.sqrt(0.25 * 0.75 / n)
    for metric in ("acc", "acc_norm"):
        assert abs(res[metric]["value"] - 0.25) <= 3 * se, res[metric]


def test_bad_inputs_are_clear_errors(toy, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(toy["mc_valid"].read_text().splitlines()[0] + "\n{not json\n")
    base = ["--load", str(toy["pretrained"]), "--no-progress"]
    proc = run_tool(EVALUATE, 1, base + ["--benchmark", f"medqa={bad}"], tmp_path, check=False)
    assert proc.returncode == 2 and f"{bad}:2:" in proc.stderr and "Traceback" not in proc.stderr
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    proc = run_tool(EVALUATE, 1, base + ["--corpus", f"e={empty}"], tmp_path, check=False)
    assert proc.returncode == 2 and "empty corpus" in proc.stderr
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9\n".encode("latin-1"))
    proc = run_tool(EVALUATE, 1, base + ["--corpus", f"l={latin}"], tmp_path, check=False)
    assert proc.returncode == 2 and f"{latin}:1: not UTF-8" in proc.stderr
