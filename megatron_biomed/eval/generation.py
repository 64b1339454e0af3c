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
  F1 (the ``rouge-score`` package with its default tokenizer and the Porter stemmer, as their mimic_evaluate.py;
  megatron_biomed/data/metrics/text.py).

And BioGPT's generative end-to-end relation extraction (microsoft/BioGPT examples/RE-* @ 648f7d6):
``bc5cdr_re``, ``kd_dti_re``, ``ddi_re``: the document in, BioGPT's target sentence out, parsed back into triples
(data/tasks/relation_text.py) and scored with ``f1``, ``precision``, ``recall`` as BioGPT scores each corpus
(data/metrics/triples.py). ``meqsum``: a consumer health question in, its one-line summary out, ROUGE-1/2/L.
Decoding is greedy unless tools/evaluate.py's --temperature/--top-k/--top-p/--seed ask for sampling.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from megatron_biomed.data.metrics.text import rouge
from megatron_biomed.data.metrics.triples import hard_match_prf, ids_of, micro_prf
from megatron_biomed.data.tasks import ReadReport, read_task_file
from megatron_biomed.data.tasks.clinical_notes import (
    admission_and_discharge,
    heldout_patients,
    sample_notes,
)
from megatron_biomed.data.tasks.relation_text import TEMPLATES, parse_triples, relation_pairs
from megatron_biomed.errors import BiomedError
from megatron_biomed.finetune.prompts import EVAL_CONTEXT_CHARS, passages_context, render_chat, render_instruction
from megatron_biomed.registry import Registry


class GenerationTaskError(BiomedError, ValueError):
    """An unknown generation task, or one asked for what it cannot do."""


@dataclass(frozen=True)
class GenerationRequest:
    """One item: the prompt's text, the reference the generation is scored against, and an id for logs;
    ``gold``: what the task's scorer compares against where the reference text is not enough (relation triples,
    ids)."""

    prompt: str
    reference: str
    uid: str = ""
    gold: object = None


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


# ---- ROUGE (megatron_biomed/data/metrics/text.py) ---------------------------------------------------------


def _score_rouge(generations: list[str], requests: list[GenerationRequest]):
    return [(sc.metric, sc.value, list(sc.per_item)) for sc in rouge(generations, [r.reference for r in requests])]


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


# ---- generative relation extraction (microsoft/BioGPT examples/RE-* @ 648f7d6503c038b44e70b7510bf431c7be94e891) ----
# Prompt and response are the SFT pair of tools/make_generative_sft.py: BioGPT's lower-cased document text, its
# target sentence. BioGPT puts 9 learned prompt tokens between the two (train.sh --learned-prompt 9); we have none
# and use the project's plain chat template instead (our choice: the SFT task's default task.chat_template).
# Decoding: BioGPT's inference.py --beam 1 (greedy), --decoding_length 1024 (prompt and target together). Here
# 512 new tokens (our choice: target sentences are long -- DDI train median 298 characters, 99th percentile 2,613;
# KD-DTI valid up to 9,603) and the end-of-text token ends a generation (the SFT example closes with it).
RE_NEW_TOKENS = 512
SUMMARY_NEW_TOKENS = 64  # our choice: one short question (longest shared summary: 26 words, 168 characters)
# Our choice (no published MeQSum prompt for decoder-only SFT): one instruction line before the question.
SUMMARY_INSTRUCTION = "Summarize the consumer health question in one short question.\n\n"


def chat_prompt(user_text: str, template: str = "plain") -> str:
    """The text before the response of a one-turn SFT example rendered with ``template``: what the model saw
    before the answer it was fine-tuned to give."""
    segments = render_chat((("user", user_text), ("assistant", "")), template)
    return "".join(text for text, is_response in segments if not is_response)


def _relation_requests(fmt: str):
    def load(path, tok, skip_bad=False, report=None) -> list[GenerationRequest]:
        report = report if report is not None else ReadReport(str(path))
        docs = read_task_file(path, fmt, skip_bad=skip_bad, report=report)
        pairs = relation_pairs(docs, fmt, report)
        if fmt == "bc5cdr_re":
            # The split's name -> id tables (BioGPT's <split>.entities.json): every document's names, a later
            # document's id winning -- this equals their valid.entities.json on all 981 chemical and 1,257 disease
            # names of the 499 shared development documents (checked by hand against the BioGPT snapshot).
            heads = {n: i for d in docs for n, i in d.head_names}
            tails = {n: i for d in docs for n, i in d.tail_names}
            golds = [(frozenset((t.head_id, t.tail_id) for t in d.triples), heads, tails) for _, _, d in pairs]
        else:
            golds = [tuple((t.head, t.relation, t.tail) for t in d.triples) for _, _, d in pairs]
        return [GenerationRequest(chat_prompt(text), target, d.uid, gold)
                for (text, target, d), gold in zip(pairs, golds)]  # fmt: skip

    return load


def _score_cid(generations: list[str], requests: list[GenerationRequest]):
    """BC5CDR: generated names -> MeSH ids through the split's tables, then corpus-level P/R/F1 of CID pairs
    against every CID pair of the document (also those without a writable name, as the CDR jar scores them)."""
    template = TEMPLATES["bc5cdr_re"]
    pred = [ids_of(parse_triples(g, template), r.gold[1], r.gold[2]) for g, r in zip(generations, requests)]
    scores = micro_prf(pred, [r.gold[0] for r in requests])
    return [(sc.metric, sc.value, list(sc.per_item) if sc.per_item else []) for sc in scores]


def _score_hard_match(fmt: str):
    template = TEMPLATES[fmt]

    def score(generations: list[str], requests: list[GenerationRequest]):
        scores = hard_match_prf([parse_triples(g, template) for g in generations], [r.gold for r in requests])
        return [(sc.metric, sc.value, list(sc.per_item)) for sc in scores]

    return score


# ---- MeQSum question summarisation ---------------------------------------------------------------------------


def summary_prompt(source: str) -> str:
    return SUMMARY_INSTRUCTION + source.strip()


def summary_requests(path, tok, skip_bad=False, report=None) -> list[GenerationRequest]:
    """MeQSum / MEDIQA-QS items: the question in the instruction (plain chat template), the summary the
    reference."""
    items = read_task_file(path, "meqsum", skip_bad=skip_bad, report=report)
    return [GenerationRequest(chat_prompt(summary_prompt(it.source)), it.summary, it.uid) for it in items]


def sft_pairs(fmt: str, path, skip_bad: bool = False, report: ReadReport | None = None) -> list[tuple[str, str, str]]:
    """``(id, prompt, response)`` SFT pairs of a generation task's file (tools/make_generative_sft.py): the same
    prompt text the task's requests wrap in the chat template, the reference as response. ``fmt``: ``meqsum`` or
    a relation corpus (``bc5cdr_re``, ``kd_dti_re``, ``ddi_re``; documents without a writable triple are left
    out and counted in ``report``)."""
    if fmt == "meqsum":
        items = read_task_file(path, fmt, skip_bad=skip_bad, report=report)
        return [(it.uid, summary_prompt(it.source), it.summary) for it in items]
    if fmt not in TEMPLATES:
        raise GenerationTaskError(f"no SFT pairs for format {fmt!r}; known: meqsum, {', '.join(TEMPLATES)}")
    docs = read_task_file(path, fmt, skip_bad=skip_bad, report=report)
    return [(d.uid, text, target) for text, target, d in relation_pairs(docs, fmt, report)]


TASKS: Registry[GenerationTask] = Registry("generation task", {
    # ft_biomamba/config.py EvalConfig: max_new_tokens 8, temperature 0 (greedy).
    "bioasq_generative": GenerationTask("bioasq_generative", _yes_no_requests("bioasq"), _score_yes_no, 8),
    # run_eval.py --dataset pubmedqa: the same prompt, parse and metrics on PubMedQA.
    "pubmedqa_generative": GenerationTask("pubmedqa_generative", _yes_no_requests("pubmedqa"), _score_yes_no, 8),
    "mimic_completion": GenerationTask("mimic_completion", completion_requests, _score_rouge, CLINICAL_NEW_TOKENS),
    "mimic_discharge": GenerationTask("mimic_discharge", discharge_requests, _score_rouge, CLINICAL_NEW_TOKENS),
    "bc5cdr_re": GenerationTask("bc5cdr_re", _relation_requests("bc5cdr_re"), _score_cid, RE_NEW_TOKENS, True),
    "kd_dti_re": GenerationTask("kd_dti_re", _relation_requests("kd_dti_re"), _score_hard_match("kd_dti_re"),
                                RE_NEW_TOKENS, True),
    "ddi_re": GenerationTask("ddi_re", _relation_requests("ddi_re"), _score_hard_match("ddi_re"), RE_NEW_TOKENS,
                             True),
    "meqsum": GenerationTask("meqsum", summary_requests, _score_rouge, SUMMARY_NEW_TOKENS, True),
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
