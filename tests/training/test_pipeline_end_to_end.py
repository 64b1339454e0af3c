"""The quickstart's pipeline at test size: sample XML -> JSONL -> tokenizer -> .bin/.idx -> pretrain on the
real indexed data (megatron-core GPTDataset) with validation -> greedy generation from the checkpoint."""

from __future__ import annotations

import math
import os
import subprocess
import sys

from launch import CHILD_ENV, ROOT, read_metrics, run_pretrain


def _tool(name: str, *args: str, cwd) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / name), *args],
        cwd=cwd,
        env=dict(os.environ, **CHILD_ENV),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_sample_to_trained_checkpoint_and_generation(tmp_path):
    _tool(
        "pubmed_to_jsonl.py",
        "--input",
        str(ROOT / "examples/data/sample_pubmed.xml.gz"),
        "--output-dir",
        str(tmp_path / "jsonl"),
        "--workers",
        "1",
        cwd=tmp_path,
    )
    _tool(
        "train_tokenizer.py",
        "--input",
        str(tmp_path / "jsonl/*.jsonl"),
        "--json-keys",
        "text",
        "--vocab-size",
        "1024",
        "--output-dir",
        str(tmp_path / "tok"),
        cwd=tmp_path,
    )
    _tool(
        "preprocess_data.py",
        "--input",
        str(tmp_path / "jsonl/*.jsonl"),
        "--json-keys",
        "text",
        "--tokenizer",
        str(tmp_path / "tok"),
        "--output-prefix",
        str(tmp_path / "data/pubmed"),
        "--workers",
        "1",
        "--append-eod",
        "--no-progress",
        cwd=tmp_path,
    )
    overrides = [
        "model.vocab_size=1024",
        f"data.blend={tmp_path / 'data/pubmed_text_document'}",
        f"data.tokenizer={tmp_path / 'tok'}",
        "data.split=90,10,0",
        f"data.cache_dir={tmp_path / 'cache'}",
        "train.train_iters=30",
        "train.eval_interval=15",
        "train.eval_iters=2",
        "optimizer.lr=3e-3",
        f"checkpoint.save={tmp_path / 'ck'}",
        f"logging.metrics_file={tmp_path / 'm.jsonl'}",
        f"logging.tensorboard_dir={tmp_path / 'tb'}",
    ]
    proc = run_pretrain(1, overrides, tmp_path)
    train, valid = read_metrics(tmp_path / "m.jsonl"), read_metrics(tmp_path / "m.jsonl", kind="valid")
    assert sorted(valid) == [15, 30]
    assert valid[30]["loss"] < valid[15]["loss"] < train[1]["loss"]
    assert math.isclose(valid[30]["ppl"], math.exp(valid[30]["loss"]), rel_tol=1e-9)
    assert "final perplexity" in proc.stdout
    assert any((tmp_path / "tb").iterdir())  # TensorBoard event file
    gen = _tool(
        "generate.py",
        "--preset",
        "tiny-biomedlm",
        "--set",
        "model.vocab_size=1024",
        "--load",
        str(tmp_path / "ck"),
        "--tokenizer",
        str(tmp_path / "tok"),
        "--prompt",
        "Patients with",
        "--max-new-tokens",
        "8",
        cwd=tmp_path,
    )
    assert "prompt: 'Patients with'" in gen.stdout
    line = next(ln for ln in gen.stdout.splitlines() if ln.startswith("generation:"))
    assert len(line) > len("generation: ''")
