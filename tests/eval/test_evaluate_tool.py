"""tools/evaluate.py end to end: the same scores, item by item, on one process and at PP2 x DP2; chance on a
shuffled task; clear errors."""

from __future__ import annotations

import json
import math

import pytest
from launch import ROOT, run_finetune, run_tool
from toydata import FT_BASE, mc_items, task_args, write_jsonl

from megatron_biomed.config.experiment import ConfigError
from megatron_biomed.eval.cli import build_arg_parser, evaluate

EVALUATE = ROOT / "tools" / "evaluate.py"
PP2DP2 = ["--set", "parallel.pipeline_model_parallel_size=2"]  # 4 ranks: the rest is data parallel
LIMIT = 13  # items per task: two passes of 8 (micro-batch 4 x DP2), the second uneven (4 on rank 0, 1 on rank 1)


def _corpus(tmp_path):
    rows = [{"text": "the red cat saw the blue dog. " * (3 + 2 * i)} for i in range(6)]
    return write_jsonl(tmp_path / "corpus.jsonl", rows)


def test_same_scores_item_by_item_on_one_process_and_at_pp2_dp2(toy, tmp_path):
    """Perplexity (sliding windows), two benchmarks and a fine-tuned head, from one checkpoint, on one process
    and at PP2 x DP2 (the data-parallel gather of per-item scores, with padding on the last, uneven pass):
    every document's, question's and head item's scores, and every aggregate, as on one process.

    Tensor parallelism of evaluation's forward passes is the model's own (held by tests/finetune's TP layouts,
    which score DPO's reference log-probs through the same scoring pass)."""
    ckpt = tmp_path / "mc"
    run_finetune(1, task_args(toy, "mc") + ["--save", str(ckpt)], FT_BASE + ["train.train_iters=3"], tmp_path)
    args = ["--load", str(ckpt), "--corpus", f"toy={_corpus(tmp_path)}", "--benchmark", f"pubmedqa={toy['pubmedqa']}",
            "--benchmark", f"medqa={toy['mc_valid']}", "--head", "mc", "--test-file", str(toy["mc_valid"]),
            "--stride", "40", "--limit", str(LIMIT), "--log-samples", "--no-progress",
            "--set", "train.micro_batch_size=4"]  # fmt: skip
    reports, tables = {}, {}
    for name, nproc, layout in (("one", 1, []), ("pp2dp2", 4, PP2DP2)):
        out = tmp_path / f"{name}.json"
        proc = run_tool(EVALUATE, nproc, args + layout + ["--output", str(out)], tmp_path)
        reports[name] = json.loads(out.read_text())
        tables[name] = [line for line in proc.stdout.splitlines() if line.startswith(("toy ", "pubmedqa", "medqa"))]
    layout = reports["pp2dp2"]["layout"]
    assert "pipeline_model_parallel_size 2" in layout and "data_parallel_size 2" in layout, layout
    a, b = reports["one"]["results"], reports["pp2dp2"]["results"]
    assert [(r["task"], r["metric"]) for r in a] == [(r["task"], r["metric"]) for r in b]
    metrics = {(r["task"], r["metric"]) for r in a}
    assert {("toy", "perplexity"), ("toy", "bits_per_byte"), ("pubmedqa", "acc"), ("medqa", "acc_norm"),
            ("medqa:mc", "acc")} <= metrics  # fmt: skip
    worst = 0.0
    for x, y in zip(a, b):
        worst = max(worst, abs(x["value"] - y["value"]) / max(1.0, abs(y["value"])))
        assert abs(x["value"] - y["value"]) <= 1e-12 * max(1.0, abs(y["value"])), (x, y)  # measured: 0.0
        assert x["n"] == y["n"]
    assert tables["one"] == tables["pp2dp2"] and len(tables["one"]) >= 6  # the same to the last printed digit
    # Item by item: every document's log-likelihood, every option's, every head score; the same picks.
    one, dp = reports["one"]["samples"], reports["pp2dp2"]["samples"]
    assert sorted(one) == sorted(dp) == ["medqa", "medqa:mc", "pubmedqa", "toy"]
    assert [len(one[t]) for t in ("medqa", "medqa:mc", "pubmedqa")] == [LIMIT] * 3 and len(one["toy"]) == 6
    for task in one:
        assert len(one[task]) == len(dp[task]), task
        for i, (x, y) in enumerate(zip(one[task], dp[task])):
            assert x.keys() == y.keys(), (task, i)
            for key in x:
                xs, ys = (x[key], y[key]) if isinstance(x[key], list) else ([x[key]], [y[key]])
                for u, v in zip(xs, ys, strict=True):
                    worst = max(worst, abs(u - v) / max(1.0, abs(v)))
                    # measured: 0.0 (the same micro-batches of 4 in both layouts; a pipeline split does not
                    # change the arithmetic, and the gather adds zeros in float64)
                    assert abs(u - v) <= 1e-12 * max(1.0, abs(v)), (task, i, key, x, y)
    print(f"one process vs PP2 x DP2: worst relative difference {worst:.1e}")
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
    with pytest.raises(ConfigError, match="--log-samples writes into the report: give --output"):
        evaluate(build_arg_parser().parse_args([*base, "--corpus", "c=any.txt", "--log-samples"]))
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
