"""Preprocessing streams: peak memory does not grow with input size; the progress bar reports
docs/s, MB/s and tokens/s."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from megatron_biomed.data.indexed import read_index
from megatron_biomed.data.indexed.sample_text import synthetic_abstracts
from megatron_biomed.tokenizer import TokenizerTrainConfig, train_bpe_tokenizer

ROOT = Path(__file__).resolve().parents[2]

# runs the tool in-process under a wrapper and prints the peak RSS (MB) of it and of its workers
PEAK = """
import resource, runpy, sys
sys.argv = ["tools/preprocess_data.py"] + sys.argv[1:]
try:
    runpy.run_path("tools/preprocess_data.py", run_name="__main__")
except SystemExit as e:
    assert not e.code, e.code
# VmHWM, not RUSAGE_SELF: Linux keeps ru_maxrss across exec, so this process would report the peak of
# the (pytest) process that started it; VmHWM belongs to the address space this process got at exec.
own = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024
kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(f"PEAK {own:.1f} {kids:.1f}")
"""


@pytest.fixture(scope="module")
def tokdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    train_bpe_tokenizer(synthetic_abstracts(200, seed=5), TokenizerTrainConfig(vocab_size=500), d)
    return d


def _jsonl(path: Path, mb: float) -> Path:
    lines = [(json.dumps({"text": t}) + "\n").encode() for t in synthetic_abstracts(500, seed=6)]
    block = b"".join(lines)
    with open(path, "wb") as f:
        f.writelines(block for _ in range(int(mb * 1e6 / len(block)) + 1))
    return path


def _peak(tmp_path, tokdir, src, name) -> tuple[float, float]:
    r = subprocess.run([sys.executable, "-c", PEAK, "--input", str(src), "--tokenizer", str(tokdir),
                        "--output-prefix", str(tmp_path / name), "--workers", "2", "--append-eod",
                        "--no-progress"], check=False, cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    own, kids = map(float, r.stdout.split("PEAK")[1].split())
    return own, kids


def test_peak_memory_independent_of_input_size(tmp_path, tokdir):
    # both big enough that every worker runs full-size batches; holding the ids of the larger
    # input would add ~35 MB per worker here
    small = _peak(tmp_path, tokdir, _jsonl(tmp_path / "small.jsonl", 12), "small")
    big = _peak(tmp_path, tokdir, _jsonl(tmp_path / "big.jsonl", 48), "big")
    n_small = read_index(str(tmp_path / "small_text_document")).num_documents
    n_big = read_index(str(tmp_path / "big_text_document")).num_documents
    assert n_big > 3.5 * n_small
    for s, b in zip(small, big):  # parent, then the largest worker
        assert b < 2048, f"peak RSS {b:.0f} MB"
        assert b - s < 20, f"peak RSS grew from {s:.0f} MB to {b:.0f} MB with 4x the input"


def test_progress_bar_reports_rates(tmp_path, tokdir):
    src = _jsonl(tmp_path / "in.jsonl", 1)
    for workers in ("1", "2"):
        r = subprocess.run([sys.executable, "tools/preprocess_data.py", "--input", str(src), "--tokenizer",
                            str(tokdir), "--output-prefix", str(tmp_path / f"o{workers}"),
                            "--workers", workers], check=False, cwd=ROOT, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        last = r.stderr.replace("\r", "\n").strip().splitlines()[-1]
        assert last.startswith("preprocess: 100%"), last
        for unit in ("docs/s", "MB/s", "tokens/s"):
            assert unit in last, last
        assert "docs/s" in r.stdout and "tokens/s" in r.stdout  # the final summary line
