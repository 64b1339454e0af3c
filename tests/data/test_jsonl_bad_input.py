"""Bad JSONL input: stop with file:line:problem and leave nothing that looks complete, or with
--skip-bad skip and count it."""

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
N_GOOD = 400
BAD_LINE = 371  # late in the file, so with 2 workers it falls in the second worker's chunk

CASES = {
    "bad_json": (b'{"text": "unterminated\n', "invalid JSON"),
    "not_utf8": (b'{"text": "caf\xe9 \xff bytes"}\n', "not valid UTF-8"),
    "missing_key": (b'{"body": "no text key here"}\n', "missing key 'text'"),
    "empty_document": (b'{"text": "   "}\n', "empty document"),
    "too_long": (None, "exceeds --max-document-bytes"),
}


@pytest.fixture(scope="module")
def tokdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    train_bpe_tokenizer(synthetic_abstracts(200, seed=3), TokenizerTrainConfig(vocab_size=500), d)
    return d


def _make_input(path: Path, case: str) -> Path:
    good = [json.dumps({"text": t}).encode() + b"\n" for t in synthetic_abstracts(N_GOOD, seed=4)]
    with open(path, "wb") as f:
        for i, line in enumerate(good, start=1):
            if i == BAD_LINE:
                bad = CASES[case][0]
                if bad is None:  # a 50 MB document
                    bad = b'{"text": "' + b"lorem ipsum " * (50 * 1024 * 1024 // 12) + b'"}\n'
                f.write(bad)
            f.write(line)
    return path


def _run(tokdir, src: Path, prefix: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "tools/preprocess_data.py", "--input", str(src),
                           "--tokenizer", str(tokdir), "--output-prefix", str(prefix), "--workers", "2",
                           "--append-eod", "--no-progress", *extra],
                          check=False, cwd=ROOT, capture_output=True, text=True)


@pytest.mark.parametrize("case", list(CASES))
def test_bad_record_stops_run_and_leaves_no_output(tmp_path, tokdir, case):
    src = _make_input(tmp_path / "in.jsonl", case)
    out = tmp_path / "out"
    out.mkdir()
    r = _run(tokdir, src, out / "ds")
    assert r.returncode == 1, r.stdout + r.stderr
    located = [ln for ln in r.stderr.splitlines() if f"{src}:{BAD_LINE}: " in ln]
    assert located and CASES[case][1] in located[0], r.stderr
    assert list(out.iterdir()) == [], "output or temporary files left behind after failure"

    r = _run(tokdir, src, out / "ds", "--skip-bad")
    assert r.returncode == 0, r.stderr
    assert f"skipped 1 bad records ({case}: 1)" in r.stdout
    assert read_index(str(out / "ds_text_document")).num_documents == N_GOOD
    assert sorted(p.name for p in out.iterdir()) == ["ds_text_document.bin", "ds_text_document.idx"]


def test_failure_keeps_previous_complete_output(tmp_path, tokdir):
    src = _make_input(tmp_path / "in.jsonl", "bad_json")
    r = _run(tokdir, src, tmp_path / "ds", "--skip-bad")
    assert r.returncode == 0, r.stderr
    before = (tmp_path / "ds_text_document.idx").read_bytes()
    assert _run(tokdir, src, tmp_path / "ds").returncode == 1
    assert (tmp_path / "ds_text_document.idx").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("ds")) == [
        "ds_text_document.bin", "ds_text_document.idx"]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_missing_tokenizer_fails_cleanly(tmp_path, workers):
    src = _make_input(tmp_path / "in.jsonl", "bad_json")
    out = tmp_path / "out"
    out.mkdir()
    r = subprocess.run([sys.executable, "tools/preprocess_data.py", "--input", str(src), "--tokenizer",
                        str(tmp_path / "no_such_tokenizer"), "--output-prefix", str(out / "ds"),
                        "--workers", workers, "--no-progress"],
                       check=False, cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 1 and "no_such_tokenizer: no tokenizer.json" in r.stderr, r.stderr
    assert list(out.iterdir()) == []
