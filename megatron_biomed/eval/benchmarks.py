"""The biomedical benchmarks as zero- / few-shot multiple-choice log-likelihood tasks.

Prompt templates, in one readable place, follow lm-evaluation-harness's tasks where it has them
(``medqa_4options``, ``medmcqa``, ``mmlu_*``, ``pubmedqa``); BioASQ yes/no (not in the harness) uses the
PubMedQA layout with the snippets as context. Each choice is scored by the log-likelihood of its
continuation; ``acc`` takes the highest, ``acc_norm`` the highest per character of the continuation.
Few-shot exemplars (``num_fewshot``) are drawn from a given train/dev file with a fixed seed, each written as
the prompt followed by its answer, separated by blank lines.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from megatron_biomed.data.tasks import read_task_file
from megatron_biomed.errors import BiomedError
from megatron_biomed.finetune.prompts import EVAL_CONTEXT_CHARS, pubmedqa_labelled_context, render_instruction


class BenchmarkError(BiomedError, ValueError):
    """An unknown benchmark, or a benchmark asked for what its files or flags cannot give."""


MMLU_MEDICAL = (
    "anatomy",
    "clinical_knowledge",
    "college_biology",
    "college_medicine",
    "medical_genetics",
    "professional_medicine",
)
LETTERS = "ABCDE"


@dataclass(frozen=True)
class Question:
    """One benchmark item: the prompt, the continuations to score, and the index of the right one."""

    prompt: str
    choices: tuple[str, ...]
    answer: int


def _lettered(item) -> str:
    return "".join(f"{LETTERS[i]}. {o}\n" for i, o in enumerate(item.options))


def medqa_question(item) -> Question:
    return Question(f"Question: {item.question}\n{_lettered(item)}Answer:",
                    tuple(LETTERS[: len(item.options)]), item.answer)  # fmt: skip


def medmcqa_question(item) -> Question:
    return Question(f"Question: {item.question}\nChoices:\n{_lettered(item)}Answer:",
                    tuple(LETTERS[: len(item.options)]), item.answer)  # fmt: skip


def mmlu_question(item) -> Question:
    return Question(f"{item.question.strip()}\n{_lettered(item)}Answer:", tuple(LETTERS[: len(item.options)]),
                    item.answer)  # fmt: skip


def yes_no_question(item) -> Question:
    return Question(f"Abstract: {item.context}\nQuestion: {item.question}\nAnswer:", tuple(item.label_names),
                    item.label)  # fmt: skip


def biomamba_question(item) -> Question:
    """BioMamba's PubMedQA log-probability scoring (LeoYML/BioMamba scripts/evaluation/eval_pubmedqa_generative.py
    @ e61db22 ``strategy_logprob``): its SFT instruction with the "LABEL: passage" context cut at 2,400
    characters, and the label words after "Answer:". They compare the next-token probabilities of the first
    token of each word's spellings ("yes", " yes", "Yes", " Yes", ...) and take each word's best; here each word
    is scored once, as " yes" / " no" / " maybe" (the spelling their SFT trains after "Answer:")."""
    prompt = render_instruction(item.question, pubmedqa_labelled_context(item), "biomamba_qa", EVAL_CONTEXT_CHARS)
    return Question(prompt, tuple(item.label_names), item.label)


@dataclass(frozen=True)
class Benchmark:
    name: str
    format: str  # the reader in megatron_biomed.data.tasks
    to_question: object
    description: str = ""


def benchmark(name: str) -> Benchmark:
    """``medqa``, ``medmcqa``, ``pubmedqa``, ``bioasq`` or ``mmlu_<subject>``."""
    if name.startswith("mmlu_"):
        subject = name[len("mmlu_") :]
        text = subject.replace("_", " ")
        return Benchmark(name, "mmlu", mmlu_question,
                         f"The following are multiple choice questions (with answers) about {text}.\n\n")  # fmt: skip
    table = {
        "medqa": Benchmark("medqa", "medqa", medqa_question),
        "medmcqa": Benchmark("medmcqa", "medmcqa", medmcqa_question),
        "pubmedqa": Benchmark("pubmedqa", "pubmedqa", yes_no_question),
        "bioasq": Benchmark("bioasq", "bioasq", yes_no_question),
        "pubmedqa_biomamba": Benchmark("pubmedqa_biomamba", "pubmedqa", biomamba_question),
    }
    if name not in table:
        known = ", ".join([*table, *(f"mmlu_{s}" for s in MMLU_MEDICAL)])
        raise BenchmarkError(f"unknown benchmark {name!r}; known: {known}")
    return table[name]


def load_questions(bench: Benchmark, path: str | Path, *, cop_base: int | None = None, skip_bad=False,
                   report=None) -> list[Question]:  # fmt: skip
    kw = {"cop_base": cop_base} if bench.format == "medmcqa" else {}
    if bench.format == "medmcqa" and cop_base is None:
        raise BenchmarkError("medmcqa: give its 'cop' convention (0 or 1) with --medmcqa-cop-base")
    items = read_task_file(path, bench.format, skip_bad=skip_bad, report=report, **kw)
    return [bench.to_question(it) for it in items]


def with_fewshot(bench: Benchmark, questions: list[Question], exemplars: list[Question], k: int,
                 seed: int = 1234) -> list[Question]:  # fmt: skip
    """Each question's prompt preceded by the description and ``k`` exemplars (prompt + right answer) drawn
    with a fixed seed (a different draw per question, never the question itself)."""
    if k and len(exemplars) < k:
        raise BenchmarkError(f"{bench.name}: {k}-shot needs {k} exemplars, the few-shot file has {len(exemplars)}")
    rng = random.Random(seed)
    out = []
    for q in questions:
        shots = ""
        if k:
            pool = [e for e in exemplars if e.prompt != q.prompt]
            picked = rng.sample(pool, k)
            shots = "".join(f"{e.prompt} {e.choices[e.answer]}\n\n" for e in picked)
        out.append(Question(bench.description + shots + q.prompt, q.choices, q.answer))
    return out
