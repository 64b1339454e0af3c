"""The biomedical benchmarks as zero- / few-shot multiple-choice log-likelihood tasks.

Prompt templates, in one readable place, follow lm-evaluation-harness's tasks where it has them
(``medqa_4options``, ``medmcqa``, ``mmlu_*``, ``pubmedqa``; EleutherAI/lm-evaluation-harness @ 4e7e0d4:
lm_eval/tasks/mmlu/default/_default_template_yaml and mmlu_<subject>.yaml, lm_eval/tasks/pubmedqa/
preprocess_pubmedqa.py, whose abstract is the CONTEXTS joined with "\n"); BioASQ yes/no (not in the harness)
uses the PubMedQA layout with the snippets as the contexts. Each choice is scored by the log-likelihood of its
continuation (" " + choice, the harness's target delimiter); ``acc`` takes the highest, ``acc_norm`` the
highest per character of the continuation.

Few-shot (``num_fewshot``): the description, then each exemplar as its prompt, " ", its answer and a blank
line, then the question (lm_eval/api/task.py fewshot_context and build_qa_turn). MMLU's exemplars are the
first n of the few-shot file (the harness's ``first_n`` sampler over the dev split), the question itself
left out only when the few-shot file is the file evaluated (the harness drops the evaluated document only
when the few-shot split is the test split; lm_eval/api/samplers.py FirstNSampler). The other benchmarks draw
their exemplars with a fixed seed, never the question itself (the harness's default sampler is a seeded draw
too, not reproduced draw for draw).
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
    abstract = "\n".join(item.contexts)  # lm-evaluation-harness preprocess_pubmedqa.py: CONTEXTS joined with "\n"
    return Question(f"Abstract: {abstract}\nQuestion: {item.question}\nAnswer:", tuple(item.label_names),
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
    # lm-evaluation-harness's sampler names: "first_n", the first k exemplars in file order (MMLU); "default",
    # a seeded draw.
    fewshot_sampler: str = "default"


def benchmark(name: str) -> Benchmark:
    """``medqa``, ``medmcqa``, ``pubmedqa``, ``bioasq`` or ``mmlu_<subject>``."""
    if name.startswith("mmlu_"):
        subject = name[len("mmlu_") :]
        text = subject.replace("_", " ")
        return Benchmark(name, "mmlu", mmlu_question,
                         f"The following are multiple choice questions (with answers) about {text}.\n\n",
                         fewshot_sampler="first_n")  # fmt: skip
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
                 seed: int = 1234, *, same_split: bool = False) -> list[Question]:  # fmt: skip
    """Each question's prompt preceded by the description and ``k`` exemplars (prompt + right answer).

    ``bench.fewshot_sampler`` "first_n": the first ``k`` exemplars in order, the same for every question,
    leaving the question itself out only when ``same_split`` (the exemplars come from the file evaluated).
    "default": a draw with a fixed seed, a different one per question, never the question itself."""
    if k and len(exemplars) < k:
        raise BenchmarkError(f"{bench.name}: {k}-shot needs {k} exemplars, the few-shot file has {len(exemplars)}")
    rng = random.Random(seed)
    out = []
    for q in questions:
        shots = ""
        if k:
            first_n = bench.fewshot_sampler == "first_n"
            if first_n:
                pool = [e for e in exemplars if e != q] if same_split else exemplars
            else:
                pool = [e for e in exemplars if e.prompt != q.prompt]
            if len(pool) < k:
                raise BenchmarkError(f"{bench.name}: {k}-shot needs {k} exemplars besides the question, the "
                                     f"few-shot file has {len(pool)}")
            picked = pool[:k] if first_n else rng.sample(pool, k)
            shots = "".join(f"{e.prompt} {e.choices[e.answer]}\n\n" for e in picked)
        out.append(Question(bench.description + shots + q.prompt, q.choices, q.answer))
    return out


def prepare_questions(name: str, path: str | Path, fewshot_path: str | Path | None = None, num_fewshot: int = 0,
                      seed: int = 1234, *, cop_base: int | None = None, skip_bad: bool = False,
                      limit: int | None = None) -> list[Question]:  # fmt: skip
    """The questions of benchmark ``name`` in ``path`` (the first ``limit``), each with its ``num_fewshot``
    exemplars from ``fewshot_path`` (:func:`with_fewshot`): what ``tools/evaluate.py --benchmark`` and a suite's
    benchmark entry score."""
    bench = benchmark(name)
    qs = load_questions(bench, path, cop_base=cop_base, skip_bad=skip_bad)
    shots = load_questions(bench, fewshot_path, cop_base=cop_base) if fewshot_path else []
    if num_fewshot and not shots:
        raise BenchmarkError(f"{name}: {num_fewshot}-shot needs a few-shot file (--fewshot {name}=FILE)")
    qs = qs[:limit] if limit else qs
    same_split = bool(fewshot_path) and Path(fewshot_path).resolve() == Path(path).resolve()
    return with_fewshot(bench, qs, shots, num_fewshot, seed, same_split=same_split)
