"""Pretraining reports the loss of each ``train.eval_corpora`` prefix separately at every eval interval, and
tools/evaluate.py reads the same .bin/.idx prefixes."""

from __future__ import annotations

import json
import subprocess
import sys

from launch import ROOT, read_metrics, run_pretrain, run_tool
from toydata import ANIMALS, COLOURS, write_jsonl


def _prefix(toy, tmp_path, name, words):
    rows = [{"text": " ".join(words[(i + j) % len(words)] for j in range(40))} for i in range(30)]
    src = write_jsonl(tmp_path / f"{name}.jsonl", rows)
    out = tmp_path / "data" / name
    subprocess.run([sys.executable, str(ROOT / "tools" / "preprocess_data.py"), "--input", str(src), "--json-keys",
                    "text", "--tokenizer", str(toy["tok"]), "--output-prefix", str(out), "--workers", "1",
                    "--append-eod", "--no-progress"], check=True, capture_output=True)  # fmt: skip
    return f"{out}_text_document"


def test_per_corpus_validation_during_pretraining_and_in_evaluate(toy, tmp_path):
    colours = _prefix(toy, tmp_path, "colours", COLOURS)
    animals = _prefix(toy, tmp_path, "animals", ANIMALS)
    metrics = tmp_path / "m.jsonl"
    run_pretrain(
        1,
        [f"data.blend={colours}", f"data.tokenizer={toy['tok']}", "data.split=90,10,0", "train.train_iters=4",
         "train.eval_interval=2", "train.eval_iters=1", f"train.eval_corpora=colours={colours} animals={animals}",
         f"logging.metrics_file={metrics}", f"checkpoint.save={tmp_path / 'ckpt'}", f"data.cache_dir={tmp_path}/c"],
        tmp_path,
    )  # fmt: skip
    for name in ("colours", "animals"):
        rows = read_metrics(metrics, kind=f"valid-{name}")
        assert sorted(rows) == [2, 4] and all(r["ppl"] > 1 for r in rows.values())
    # Trained on colours only: the colour corpus is easier than the animal one by the end.
    final = {name: read_metrics(metrics, kind=f"valid-{name}")[4]["loss"] for name in ("colours", "animals")}
    assert final["colours"] < final["animals"]
    out = tmp_path / "r.json"
    run_tool(ROOT / "tools" / "evaluate.py", 1, ["--load", str(tmp_path / "ckpt"), "--corpus", f"colours={colours}",
                                                 "--no-progress", "--output", str(out)], tmp_path)  # fmt: skip
    res = {r["metric"]: r["value"] for r in json.loads(out.read_text())["results"]}
    assert res["perplexity"] > 1 and res["bits_per_byte"] > 0
