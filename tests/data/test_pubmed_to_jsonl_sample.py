"""The quickstart's sample: the committed file is what the generator makes, and the quickstart
command turns it into JSONL with every filter showing up in the report."""

from __future__ import annotations

import gzip
import json
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

from tool_scripts import load_tool

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "data" / "sample_pubmed.xml.gz"




make_sample_pubmed = load_tool("make_sample_pubmed")


def test_committed_sample_is_reproducible_and_small():
    assert SAMPLE.stat().st_size < 300 * 1024
    assert gzip.decompress(SAMPLE.read_bytes()) == make_sample_pubmed.build(400, 1234)


def test_generator_is_deterministic_per_seed(tmp_path):
    a, b, c = tmp_path / "a.xml.gz", tmp_path / "b.xml.gz", tmp_path / "c.xml.gz"
    for path, seed in ((a, 7), (b, 7), (c, 8)):
        assert make_sample_pubmed.main(["--output", str(path), "--num-citations", "60", "--seed", str(seed)]) == 0
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()


def test_quickstart_command_and_report(tmp_path):
    out = tmp_path / "jsonl"
    cmd = [sys.executable, "tools/pubmed_to_jsonl.py", "--input", "examples/data/sample_pubmed.xml.gz",
           "--output-dir", str(out), "--workers", "1"]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr
    lines = (out / "sample_pubmed.jsonl").read_text(encoding="utf-8").splitlines()
    docs = [json.loads(ln) for ln in lines]
    assert all(isinstance(d["text"], str) and d["text"] for d in docs)
    rep = json.loads((out / "cleaning_report.json").read_text())
    assert rep["records_read"] == 400 and rep["records_kept"] == len(docs)
    # every special citation the generator planted is dropped under its own reason
    kinds = Counter(make_sample_pubmed.plan(400, random.Random(1234)))
    assert rep["dropped"] == {
        "no_abstract": kinds["letter"],
        "non_english": kinds["french"] + kinds["german"],
        "retracted": kinds["retracted"] + kinds["retraction_notice"],
        "duplicate_text": kinds["duplicate"],
        "too_short": kinds["short"],
    }
    assert f"records kept: {len(docs)}" in res.stdout
    # structured abstracts keep their section labels
    assert sum(1 for d in docs if d["abstract"].startswith("BACKGROUND: ")) == kinds["structured"]
