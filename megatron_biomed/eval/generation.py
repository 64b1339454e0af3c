"""Generative evaluation: greedy answers scored against references (``tools/evaluate.py --benchmark NAME=PATH``).

A :class:`GenerationTask` says how to read its file into :class:`GenerationRequest` rows (a prompt and a
reference), how many tokens to generate, and how to score the generations; one entry in the :data:`TASKS` registry
registers it. The generations come from the project's generator (megatron_biomed/inference/generate.py: KV /
state cache, greedy), prompts batched by length.

The tasks here are BioMamba's (LeoYML/BioMamba @ e61db22):
* ``bioasq_generative`` (and ``pubmedqa_generative``, their run_eval.py ``--dataset pubmedqa``): yes/no(/maybe)
  questions, the SFT instruction as prompt, 8 greedy tokens, the answer parsed as ft_biomamba/evaluate.py
  ``extract_answer`` + ``normalize_answer`` do; accuracy and macro-F1 as their ``_calc_metrics`` computes them.
* ``mimic_completion``: a clinical note's second half from its first half (ft_biomamba/mimic_data.py
  ``prepare_completion_data``); ``mimic_discharge``: the discharge sections from the admission sections
  (``prepare_discharge_data``, mimic_prompts.py ``DISCHARGE_TEMPLATE``). Both on the notes of 10% of the
  patients of a file in MIMIC-IV-Note's discharge.csv layout, at most 500 notes, 128 greedy tokens, and ROUGE-1/2/L
  F1 (the ``rouge-score`` package with its default tokenizer and the Porter stemmer, as their mimic_evaluate.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from megatron_biomed.data.tasks import ReadReport, read_task_file
from megatron_biomed.data.tasks.clinical_notes import (
    admission_and_discharge,
    heldout_patients,
    sample_notes,
)
from megatron_biomed.errors import BiomedError
from megatron_biomed.finetune.prompts import EVAL_CONTEXT_CHARS, passages_context, render_instruction
from megatron_biomed.registry import Registry


class GenerationTaskError(BiomedError, ValueError):
    """An unknown generation task, or one asked for what it cannot do."""


@dataclass(frozen=True)
class GenerationRequest:
    """One item: the prompt's text, the reference the generation is scored against, and an id for logs."""

    prompt: str
    reference: str
    uid: str = ""


@dataclass(frozen=True)
class GenerationTask:
    """``load(path, tok, skip_bad, report)`` -> requests; ``score(generations, requests)`` -> [(metric, value,
    per-item values)]. ``max_new_tokens`` greedy tokens per request; ``stop_at_eod``: stop at the end-of-text
    token (BioMamba's mamba_ssm ``generate`` does not: it runs the full length, the eod dropped from the text)."""

    name: str
    load: Callable
    score: Callable
    max_new_tokens: int
    stop_at_eod: bool = False


# ---- yes/no answers ---------------------------------------------------------------------------------------

# LeoYML/BioMamba ft_biomamba/evaluate.py @ e61db22 extract_answer (question_type "yesno") and normalize_answer.
_ANSWER_PREFIXES = ("answer:", "the answer is", "a:", "(yes/no):", "yes/no:")
_NORMAL = {"y": "yes", "true": "yes", "1": "yes", "n": "no", "false": "no", "0": "no",
           "uncertain": "maybe", "unclear": "maybe", "unknown": "maybe"}  # fmt: skip


def yes_no_answer(text: str) -> str:
    """The answer word of a generation, parsed as BioMamba's evaluation does: the first line, lower-cased, with
    "answer:" / "the answer is" / "a:" / "(yes/no):" / "yes/no:" removed anywhere in it and leading spaces, tabs
    and ``:;,-.`` stripped; "yes" / "no" / "maybe" if it starts with one (so "not ..." and "none" read as "no"),
    else the first of yes/no/maybe/uncertain/unclear among its first five words (punctuation stripped), else
    its first word ("" when empty); then y/true/1 -> yes, n/false/0 -> no, uncertain/unclear/unknown -> maybe."""
    line = text.strip().split("\n")[0].lower()
    for p in _ANSWER_PREFIXES:
        line = line.replace(p, "")
    line = line.lstrip(" \t:;,-.")
    answer = None
    for keyword in ("yes", "no", "maybe"):
        if line.startswith(keyword):
            answer = keyword
            break
    words = line.split()
    if answer is None:
        for w in words[:5]:
            w = w.strip(".,;:!?()[]{}\"' ")
            if w in ("yes", "no", "maybe", "uncertain", "unclear"):
                answer = "maybe" if w in ("uncertain", "unclear") else w
                break
    if answer is None:
        answer = words[0] if words else line
    answer = answer.strip()
    return _NORMAL.get(answer, answer)


def label_scores(preds: list[str], refs: list[str]) -> list[tuple[str, float, list[float]]]:
    """acc, and macro-F1 over every label seen among predictions and references (a stray prediction such as
    "the" is a label of F1 0), as BioMamba's ``_calc_metrics`` (sklearn, zero_division=0)."""
    hits = [float(p == r) for p, r in zip(preds, refs)]
    f1 = []
    for label in sorted(set(preds) | set(refs)):
        tp = sum(1 for p, r in zip(preds, refs) if p == label and r == label)
        fp = sum(1 for p, r in zip(preds, refs) if p == label and r != label)
        fn = sum(1 for p, r in zip(preds, refs) if p != label and r == label)
        f1.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return [("acc", sum(hits) / len(hits), hits), ("macro_f1", sum(f1) / len(f1), [])]


def yes_no_prompt(item) -> str:
    """Their evaluation prompt (evaluate.py ``format_qa_prompt``): the SFT instruction with the passages (no
    section labels) cut at 2,400 characters."""
    return render_instruction(item.question, passages_context(item), "biomamba_qa", EVAL_CONTEXT_CHARS)


def _yes_no_requests(fmt: str):
    def load(path, tok, skip_bad=False, report=None) -> list[GenerationRequest]:
        items = read_task_file(path, fmt, skip_bad=skip_bad, report=report)
        return [GenerationRequest(yes_no_prompt(it), it.label_name, it.uid) for it in items]

    return load


def _score_yes_no(generations: list[str], requests: list[GenerationRequest]):
    return label_scores([yes_no_answer(g) for g in generations], [r.reference for r in requests])


# ---- ROUGE ------------------------------------------------------------------------------------------------

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def rouge_f1(predictions: list[str], references: list[str]) -> dict[str, list[float]]:
    """Per item ROUGE-1/2/L F1 of each prediction against its reference with ``rouge_score`` (its default
    tokenizer: lower-cased, non-alphanumerics as spaces; Porter stemmer on), as BioMamba's mimic_evaluate.py;
    an empty prediction or reference scores 0."""
    from rouge_score import rouge_scorer  # optional dependency (requirements.txt): only the ROUGE tasks need it

    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    out: dict[str, list[float]] = {t: [] for t in ROUGE_TYPES}
    for pred, ref in zip(predictions, references):
        scores = scorer.score(ref, pred) if pred and ref else None
        for t in ROUGE_TYPES:
            out[t].append(scores[t].fmeasure if scores else 0.0)
    return out


def _score_rouge(generations: list[str], requests: list[GenerationRequest]):
    per_item = rouge_f1(generations, [r.reference for r in requests])
    return [(t, sum(v) / len(v), v) for t, v in per_item.items()]


# ---- clinical notes (LeoYML/BioMamba ft_biomamba/mimic_*.py @ e61db22) ---------------------------------------

# mimic_config.py MIMICEvalConfig: test_ratio 0.1, seed 42, max_samples 500, prefix_ratio 0.5, max_length 1024,
# max_context_chars 4000, max_new_tokens 128 (temperature 0: greedy).
MIMIC_HELDOUT_PATIENTS = 0.1
MIMIC_SEED = 42
MIMIC_MAX_NOTES = 500
PREFIX_RATIO = 0.5
PREFIX_MAX_TOKENS = 1024
CONTEXT_CHARS = 4000
CLINICAL_NEW_TOKENS = 128
# mimic_prompts.py DISCHARGE_TEMPLATE.
DISCHARGE_TEMPLATE = (
    "Based on the following clinical information, write the discharge summary.\n\n"
    "Clinical Notes:\n{context}\n\n"
    "Discharge Summary:"
)


def _evaluated_notes(path, skip_bad, report):
    notes = read_task_file(path, "mimic_discharge", skip_bad=skip_bad, report=report)
    return sample_notes(heldout_patients(notes, MIMIC_HELDOUT_PATIENTS, MIMIC_SEED), MIMIC_MAX_NOTES, MIMIC_SEED)


def completion_requests(path, tok, skip_bad=False, report=None) -> list[GenerationRequest]:
    """``prepare_completion_data``: the note's tokens (no special tokens) cut at half (at most 1,024 tokens of
    prefix); notes under 20 tokens, or leaving under 5 after the cut, are skipped; prompt and reference are the
    decoded halves."""
    out = []
    for note in _evaluated_notes(path, skip_bad, report):
        ids = tok.encode(note.text)
        if len(ids) < 20:
            continue
        cut = min(int(len(ids) * PREFIX_RATIO), PREFIX_MAX_TOKENS)
        if len(ids) - cut < 5:
            continue
        out.append(GenerationRequest(tok.decode(ids[:cut]), tok.decode(ids[cut:]), note.note_id))
    return out


def discharge_prompt(context: str, max_chars: int = CONTEXT_CHARS) -> str:
    """``format_discharge_prompt``: the context cut at ``max_chars`` ("..." added when cut) in the template."""
    trunc = context[:max_chars] + ("..." if len(context) > max_chars else "")
    return DISCHARGE_TEMPLATE.format(context=trunc)


def discharge_requests(path, tok, skip_bad=False, report=None) -> list[GenerationRequest]:
    """``prepare_discharge_data``: notes with both admission and discharge sections; the admission sections (cut
    at 4,000 characters) in the discharge prompt, the discharge sections the reference."""
    out = []
    for note in _evaluated_notes(path, skip_bad, report):
        split = admission_and_discharge(note.text)
        if split is not None:
            out.append(GenerationRequest(discharge_prompt(split[0][:CONTEXT_CHARS]), split[1], note.note_id))
    return out


TASKS: Registry[GenerationTask] = Registry("generation task", {
    # ft_biomamba/config.py EvalConfig: max_new_tokens 8, temperature 0 (greedy).
    "bioasq_generative": GenerationTask("bioasq_generative", _yes_no_requests("bioasq"), _score_yes_no, 8),
    # run_eval.py --dataset pubmedqa: the same prompt, parse and metrics on PubMedQA.
    "pubmedqa_generative": GenerationTask("pubmedqa_generative", _yes_no_requests("pubmedqa"), _score_yes_no, 8),
    "mimic_completion": GenerationTask("mimic_completion", completion_requests, _score_rouge, CLINICAL_NEW_TOKENS),
    "mimic_discharge": GenerationTask("mimic_discharge", discharge_requests, _score_rouge, CLINICAL_NEW_TOKENS),
}, error=GenerationTaskError, plural="generation tasks")  # fmt: skip


def load_requests(task: GenerationTask, path, tok, *, skip_bad: bool = False, limit: int | None = None,
                  report: ReadReport | None = None) -> list[GenerationRequest]:  # fmt: skip
    requests = task.load(path, tok, skip_bad=skip_bad, report=report)
    requests = requests[:limit] if limit else requests
    if not requests:
        raise GenerationTaskError(f"{task.name}: {path} gives no item to generate for")
    return requests


_SPACE = re.compile(r"\s+")


def short(text: str, n: int = 80) -> str:
    """A one-line excerpt for logs."""
    text = _SPACE.sub(" ", text).strip()
    return text if len(text) <= n else text[: n - 3] + "..."
