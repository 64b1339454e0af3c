"""Benchmark prompts (lm-evaluation-harness's layouts) and few-shot exemplars drawn with a fixed seed."""

from __future__ import annotations

import csv

import pytest
from launch import SHARED_DATA
from toydata import mc_items, write_jsonl

from megatron_biomed.eval.benchmarks import MMLU_MEDICAL, benchmark, load_questions, with_fewshot
from megatron_biomed.eval.requests import rolling_samples, split_whitespace


def test_medqa_prompt_and_fewshot(tmp_path):
    path = write_jsonl(tmp_path / "q.jsonl", mc_items(10, 3))
    bench = benchmark("medqa")
    qs = load_questions(bench, path)
    q = qs[0]
    assert q.prompt.startswith("Question: ") and q.prompt.endswith("\nAnswer:") and q.choices == ("A", "B", "C", "D")
    assert "\nA. " in q.prompt and "\nD. " in q.prompt
    shots = with_fewshot(bench, qs[:3], qs, 2, seed=5)
    again = with_fewshot(bench, qs[:3], qs, 2, seed=5)
    other = with_fewshot(bench, qs[:3], qs, 2, seed=6)
    assert [s.prompt for s in shots] == [s.prompt for s in again]
    assert [s.prompt for s in shots] != [s.prompt for s in other]
    for s, orig in zip(shots, qs[:3]):
        assert s.prompt.endswith(orig.prompt) and s.prompt.count("Answer:") == 3 and s.answer == orig.answer
        head = s.prompt[: -len(orig.prompt)]
        assert orig.prompt not in head  # never the question itself as its own exemplar
    with pytest.raises(ValueError, match="needs 4 exemplars"):
        with_fewshot(bench, qs, qs[:3], 4)


def test_mmlu_subjects_on_the_shared_dev_rows():
    for subject in MMLU_MEDICAL:
        path = SHARED_DATA / "mmlu_medical" / "dev" / f"{subject}_dev.csv"
        if not path.is_file():
            pytest.skip(f"{path} is not here (shared data absent)")
        bench = benchmark(f"mmlu_{subject}")
        qs = with_fewshot(bench, load_questions(bench, path), [], 0)
        with open(path, newline="") as f:
            assert len(qs) == sum(1 for _ in csv.reader(f))
        assert qs[0].prompt.startswith(f"The following are multiple choice questions (with answers) about "
                                       f"{subject.replace('_', ' ')}.\n\n")  # fmt: skip
        assert all(0 <= q.answer < 4 for q in qs)


def test_pubmedqa_prompt_on_shared_rows():
    path = SHARED_DATA / "pubmedqa" / "pqal_trainval_500.json"
    if not path.is_file():
        pytest.skip(f"{path} is not here (shared data absent)")
    qs = load_questions(benchmark("pubmedqa"), path)
    assert len(qs) == 500 and qs[0].choices == ("yes", "no", "maybe") and qs[0].prompt.startswith("Abstract: ")


def test_whitespace_moves_to_the_continuation_and_windows_cover_every_token():
    assert split_whitespace("Answer: ", "yes") == ("Answer:", " yes")
    for n, seq, stride in ((1, 4, None), (4, 4, None), (9, 4, None), (9, 4, 3), (10, 4, 1)):
        samples = rolling_samples(list(range(1, n + 1)), seq, 0, stride)
        assert sum(int(s["loss_mask"].sum()) for s in samples) == n
        labels = [int(s["labels"][i]) for s in samples for i in range(seq) if s["loss_mask"][i]]
        assert labels == list(range(1, n + 1))  # each token once, in order
    with pytest.raises(ValueError):
        benchmark("mmlu")
