"""Our PubMedQA and MMLU prompts, character for character, against lm-evaluation-harness's templates
(EleutherAI/lm-evaluation-harness @ 4e7e0d47f33bc71070c1d38394bafbb52b117163): the expected strings below are
written out by hand from lm_eval/tasks/pubmedqa/preprocess_pubmedqa.py (doc_to_text: "Abstract: {CONTEXTS
joined by "\\n"}\\nQuestion: {QUESTION}\\nAnswer:"), lm_eval/tasks/mmlu/default/_default_template_yaml (doc_to_text
"{{question.strip()}}\\nA. ..\\nD. {{choices[3]}}\\nAnswer:", fewshot_split dev, sampler first_n),
lm_eval/tasks/mmlu/default/mmlu_medical_genetics.yaml (the description) and lm_eval/api/task.py
(fewshot_context: description, then per exemplar prompt + " " + answer + "\\n\\n", then the question) with
lm_eval/api/samplers.py (FirstNSampler: the first n; the evaluated document is left out only when the
few-shot split is the evaluated split). The items are of our own making."""

from __future__ import annotations

import csv
import json

import pytest

from megatron_biomed.eval.benchmarks import benchmark, load_questions, with_fewshot

PQA = {
    "901": {"QUESTION": "Does drug A lower pressure?", "CONTEXTS": ["Drug A was given.", " Pressure fell. "],
            "final_decision": "yes", "LONG_ANSWER": "Yes."},
    "902": {"QUESTION": "Is B toxic?", "CONTEXTS": ["B was tested."], "final_decision": "maybe",
            "LONG_ANSWER": ""},
}

# hendrycks layout: question, A, B, C, D, answer letter (no header)
MMLU_DEV = [
    [" Which gene is X-linked? ", "BRCA1", "DMD", "TP53 ", "CFTR", "B"],  # question stripped, options not
    ["Trisomy 21 causes", "Down syndrome", "Turner syndrome", "Klinefelter syndrome", "Edwards syndrome", "A"],
    ["Which base pairs with adenine in DNA?", "cytosine", "guanine", "thymine", "uracil", "C"],
]
DESCRIPTION = "The following are multiple choice questions (with answers) about medical genetics.\n\n"
SHOT = [
    "Which gene is X-linked?\nA. BRCA1\nB. DMD\nC. TP53 \nD. CFTR\nAnswer: B\n\n",
    "Trisomy 21 causes\nA. Down syndrome\nB. Turner syndrome\nC. Klinefelter syndrome\nD. Edwards syndrome\n"
    "Answer: A\n\n",
    "Which base pairs with adenine in DNA?\nA. cytosine\nB. guanine\nC. thymine\nD. uracil\nAnswer: C\n\n",
]


def _mmlu(tmp_path, rows, name):
    path = tmp_path / name
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    return path


def test_pubmedqa_prompt_is_the_harness_template(tmp_path):
    path = tmp_path / "pqa.json"
    path.write_text(json.dumps(PQA, indent=4))
    qs = load_questions(benchmark("pubmedqa"), path)
    assert qs[0].prompt == ("Abstract: Drug A was given.\n Pressure fell. \nQuestion: Does drug A lower pressure?\n"
                            "Answer:")
    assert qs[1].prompt == "Abstract: B was tested.\nQuestion: Is B toxic?\nAnswer:"
    assert qs[0].choices == ("yes", "no", "maybe") and (qs[0].answer, qs[1].answer) == (0, 2)
    assert with_fewshot(benchmark("pubmedqa"), qs, [], 0)[0].prompt == qs[0].prompt  # no description


def test_mmlu_zero_and_few_shot_prompts_are_the_harness_template(tmp_path):
    bench = benchmark("mmlu_medical_genetics")
    dev = load_questions(bench, _mmlu(tmp_path, MMLU_DEV, "dev.csv"))
    test_rows = [["Which enzyme unwinds DNA?", "helicase", "ligase", "primase", "polymerase", "A"]]
    q = load_questions(bench, _mmlu(tmp_path, test_rows, "eval.csv"))
    question = "Which enzyme unwinds DNA?\nA. helicase\nB. ligase\nC. primase\nD. polymerase\nAnswer:"
    assert with_fewshot(bench, q, dev, 0)[0].prompt == DESCRIPTION + question
    # The first n of the dev file, whatever the seed.
    for seed in (1, 2):
        assert with_fewshot(bench, q, dev, 2, seed=seed)[0].prompt == DESCRIPTION + SHOT[0] + SHOT[1] + question
    assert q[0].choices == ("A", "B", "C", "D") and q[0].answer == 0


def test_mmlu_first_n_leaves_the_question_out_only_within_one_split(tmp_path):
    bench = benchmark("mmlu_medical_genetics")
    dev = load_questions(bench, _mmlu(tmp_path, MMLU_DEV, "dev.csv"))
    # The dev file evaluated with its own exemplars: each question's first two exemplars are the others.
    own = with_fewshot(bench, dev, dev, 2, same_split=True)
    assert [p.prompt for p in own] == [DESCRIPTION + SHOT[1] + SHOT[2] + SHOT[0][: -len(" B\n\n")],
                                       DESCRIPTION + SHOT[0] + SHOT[2] + SHOT[1][: -len(" A\n\n")],
                                       DESCRIPTION + SHOT[0] + SHOT[1] + SHOT[2][: -len(" C\n\n")]]
    # Another split that happens to hold the same question keeps it (the harness compares only within a split).
    other = with_fewshot(bench, dev[:1], dev, 2)
    assert other[0].prompt == DESCRIPTION + SHOT[0] + SHOT[1] + SHOT[0][: -len(" B\n\n")]
    with pytest.raises(ValueError, match="needs 3 exemplars besides the question"):
        with_fewshot(bench, dev, dev, 3, same_split=True)
