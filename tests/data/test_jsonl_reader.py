"""megatron_biomed.data.jsonl: input expansion, line-aligned chunking, error locations."""

from __future__ import annotations

import pytest

from megatron_biomed.data.jsonl import (
    BadRecordError,
    BadRecordReport,
    FileRange,
    JsonlReadConfig,
    expand_inputs,
    iter_records,
    plan_chunks,
)


def _files(tmp_path, sizes):
    paths = []
    n = 0
    for i, k in enumerate(sizes):
        p = tmp_path / f"f{i}.jsonl"
        p.write_text("".join(f'{{"text": "doc {n + j} ' + "x" * (j % 37) + '"}\n' for j in range(k)))
        n += k
        paths.append(p)
    return paths


@pytest.mark.parametrize("n_chunks", [1, 2, 3, 7, 50])
def test_chunks_cover_every_line_once_in_order(tmp_path, n_chunks):
    paths = _files(tmp_path, [120, 0, 3, 77])
    chunks = plan_chunks(paths, n_chunks)
    assert len(chunks) == n_chunks
    texts = [t[0] for c in chunks for r in c for t, _ in iter_records(r, JsonlReadConfig(), BadRecordReport())]
    assert [t.split()[1] for t in texts] == [str(i) for i in range(200)]
    sizes = [sum(r.nbytes for r in c) for c in chunks]
    if n_chunks <= 3:  # about equal pieces
        assert max(sizes) - min(sizes) < 200


@pytest.mark.parametrize("n_chunks", [2, 3, 6])
def test_cuts_on_file_boundaries(tmp_path, n_chunks):
    # equal files: every cut falls exactly where a file starts
    paths = []
    for i in range(6):
        p = tmp_path / f"e{i}.jsonl"
        p.write_text("".join(f'{{"text": "f{i} l{j}"}}\n' for j in range(10)))
        paths.append(p)
    chunks = plan_chunks(paths, n_chunks)
    texts = [t[0] for c in chunks for r in c for t, _ in iter_records(r, JsonlReadConfig(), BadRecordReport())]
    assert texts == [f"f{i} l{j}" for i in range(6) for j in range(10)]
    assert [len(c) for c in chunks] == [6 // n_chunks] * n_chunks  # whole files, none split


def test_error_in_mid_file_chunk_names_global_line(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"text": "a"}\n' * 10 + "[1, 2]\n" + '{"text": "b"}\n')
    chunks = plan_chunks([p], 3)
    with pytest.raises(BadRecordError, match=r"x.jsonl:11: expected a JSON object, got list"):
        for c in chunks:
            for r in c:
                list(iter_records(r, JsonlReadConfig(), BadRecordReport()))


def test_skip_bad_counts_and_blank_lines_are_ignored(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"text": 5}\n\n{"text": "ok"}\n{"text": "x", "title": "t"}\n')
    rep = BadRecordReport()
    cfg = JsonlReadConfig(json_keys=("text", "title"), skip_bad=True)
    got = list(iter_records(FileRange(str(p), 0, p.stat().st_size), cfg, rep, first_line=1))
    assert [t for t, _ in got] == [["x", "t"]]
    assert rep.counts == {"not_string": 1, "missing_key": 1}
    assert rep.examples[0].startswith(f"{p}:1: key 'text' holds int")


def test_expand_inputs(tmp_path):
    paths = _files(tmp_path, [1, 1])
    (tmp_path / "notes.txt").write_text("x")
    assert expand_inputs(str(tmp_path)) == paths
    assert expand_inputs([str(tmp_path / "f*.jsonl"), str(paths[0])]) == paths
    with pytest.raises(FileNotFoundError, match="nothing.jsonl"):
        expand_inputs(str(tmp_path / "nothing.jsonl"))


def test_unpaired_surrogate_escape_is_bad_but_pairs_are_fine(tmp_path):
    p = tmp_path / "s.jsonl"
    p.write_text('{"text": "emoji \\ud83d\\ude00 ok"}\n{"text": "lone \\ud800 half"}\n')
    rep = BadRecordReport()
    got = list(iter_records(FileRange(str(p), 0, p.stat().st_size), JsonlReadConfig(skip_bad=True), rep))
    assert [t for t, _ in got] == [["emoji \U0001F600 ok"]]
    assert rep.counts == {"not_utf8": 1} and "s.jsonl:2: key 'text' holds an unpaired" in rep.examples[0]
