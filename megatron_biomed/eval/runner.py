"""Evaluation on the training loop: forward-only passes of a checkpoint's model at any TP/PP/DP layout.

* :func:`corpus_perplexity` -- rolling log-likelihood of whole documents: perplexity and bits per byte.
* :func:`benchmark_accuracy` -- multiple-choice log-likelihood scoring (acc, acc_norm).
* :func:`head_results` -- the metrics of a fine-tuned head, as its task scores them.
* :func:`generation_scores` -- greedy generations scored by their task (eval/generation.py).

Every function returns :class:`Result` rows; every rank computes the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from megatron_biomed.data.metrics import mean_stderr
from megatron_biomed.eval.generation import GenerationTask, GenerationTaskError
from megatron_biomed.eval.requests import rolling_samples, segment_attention_mask, shared_prompt_samples
from megatron_biomed.finetune.encoding import TruncationCount
from megatron_biomed.inference.generate import SamplingConfig, generate
from megatron_biomed.models.heads import flatten_choices, head_forward
from megatron_biomed.models.registry import get_family
from megatron_biomed.training.scoring import score_samples
from megatron_biomed.training.task import Task


@dataclass
class Result:
    task: str
    metric: str
    value: float
    n: int
    stderr: Optional[float] = None


class EvaluationTask(Task):
    """The model of the checkpoint (the pretrained body, or a fine-tune's body and head); no training data."""

    name = "evaluate"
    metric_names = ("loss",)
    per_token_loss = True

    def __init__(self, cfg, head_task=None):
        super().__init__(cfg)
        self.head_task = head_task
        # While scoring the head, micro-batches have the head task's shapes (options x its sequence length).
        self.head_shapes = False

    def seq_length(self) -> int:
        return self.head_task.seq_length() if self.head_shapes else self.cfg.model.seq_length

    def rows_per_sample(self) -> int:
        return self.head_task.rows_per_sample() if self.head_shapes else 1

    def build_model(self, cfg, tconfig):
        if self.head_task is not None:
            return self.head_task.build_model(cfg, tconfig)
        return super().build_model(cfg, tconfig)

    def build_datasets(self, num_samples):  # pragma: no cover - forward-only trainers build no data
        raise NotImplementedError


def _loglik_forward(seq_length: int):
    def forward(batch, model):
        out = model(batch["tokens"], batch["position_ids"], None, labels=batch["labels"])  # causal mask implied

        def values(token_losses):
            m = batch["loss_mask"].float()
            return torch.stack([-(token_losses.float() * m).sum(-1), m.sum(-1)], dim=-1)

        return out, values

    return forward


def score_loglik(trainer, samples: list[dict], progress=None) -> torch.Tensor:
    """[n, 2]: summed log-prob of each sample's scored tokens, and their number."""
    return score_samples(trainer, samples, 2, _loglik_forward(trainer.task.seq_length()), progress)


def corpus_perplexity(trainer, name: str, documents: list[str] | list[list[int]], tok, eod: int,
                      stride: int | None = None, progress=None, log: list | None = None) -> list[Result]:  # fmt: skip
    """Perplexity (per token) and bits per byte (per UTF-8 byte of the scored text, as lm-evaluation-harness
    counts them) of whole documents. ``log``, when given, receives one row per scored document: its rolling
    log-likelihood, its tokens and its bytes."""
    seq = trainer.task.seq_length()
    samples, owner, doc_bytes = [], [], []
    for doc in documents:
        if isinstance(doc, str):
            ids, text = tok.encode(doc), doc
        else:
            ids, text = list(doc), tok.decode(list(doc))
        if not ids:
            continue
        made = rolling_samples(ids, seq, eod, stride)
        owner += [len(doc_bytes)] * len(made)
        doc_bytes.append(len(text.encode("utf-8")))
        samples += made
    if not samples:
        raise ValueError(f"corpus {name}: no text to score")
    scores = score_loglik(trainer, samples, progress)
    per_doc = torch.zeros(len(doc_bytes), 2, dtype=torch.float64).index_add_(0, torch.tensor(owner), scores)
    if log is not None:
        log += [{"loglik": ll, "tokens": int(n), "bytes": b} for (ll, n), b in zip(per_doc.tolist(), doc_bytes)]
    nll = -float(per_doc[:, 0].sum())
    tokens = int(per_doc[:, 1].sum())
    total_bytes = sum(doc_bytes)
    return [
        Result(name, "perplexity", math.exp(nll / tokens), tokens),
        Result(name, "bits_per_byte", nll / math.log(2) / total_bytes, total_bytes),
        Result(name, "nll_per_token", nll / tokens, tokens),
    ]


def choice_logliks(trainer, questions, tok, eod: int, progress=None) -> list[list[float]]:
    """Each question's continuation log-likelihoods, the options of a question sharing one forward of its
    prompt (:func:`~megatron_biomed.eval.requests.shared_prompt_samples`) when the model's family keeps such
    segments apart (an attention mask), else each option in a row of its own."""
    seq = trainer.task.seq_length()
    width = max(len(q.choices) for q in questions)
    share = get_family(trainer.cfg.model.family).segment_isolation(trainer.cfg).shares_prompt
    samples, owner = [], []
    for qi, q in enumerate(questions):
        made = shared_prompt_samples(tok, q.prompt, [" " + c for c in q.choices], seq, eod, width, share)
        samples += made
        owner += [qi] * len(made)

    def forward(batch, model):
        mask = segment_attention_mask(batch["segment_ids"])
        out = model(batch["tokens"], batch["position_ids"], mask, labels=batch["labels"])
        return out, lambda token_losses: -(token_losses.float()[:, None, :] * batch["loss_mask"]).sum(-1)

    scores = score_samples(trainer, samples, width, forward, progress)
    per_question = torch.zeros(len(questions), width, dtype=torch.float64)
    per_question.index_add_(0, torch.tensor(owner), scores)
    return [per_question[i, : len(q.choices)].tolist() for i, q in enumerate(questions)]


def benchmark_accuracy(trainer, name: str, questions, tok, eod: int, progress=None,
                       log: list | None = None) -> list[Result]:  # fmt: skip
    """acc and acc_norm of multiple-choice questions by continuation log-likelihood, as lm-evaluation-harness
    defines them: acc picks the highest log-likelihood, acc_norm the highest per character of the choice (the
    choice as written, without the space that precedes it in the continuation); ties go to the first.
    ``log``, when given, receives one row per question: the log-likelihoods, the answer and both picks."""
    logliks = choice_logliks(trainer, questions, tok, eod, progress)
    acc, acc_norm = [], []
    for q, ll in zip(questions, logliks):
        norm = [v / len(c) for v, c in zip(ll, q.choices)]
        pred = max(range(len(ll)), key=ll.__getitem__)
        pred_norm = max(range(len(norm)), key=norm.__getitem__)
        acc.append(float(pred == q.answer))
        acc_norm.append(float(pred_norm == q.answer))
        if log is not None:
            log.append({"logliks": ll, "answer": q.answer, "pred": pred, "pred_norm": pred_norm})
    n = len(questions)
    return [
        Result(name, "acc", sum(acc) / n, n, mean_stderr(acc)),
        Result(name, "acc_norm", sum(acc_norm) / n, n, mean_stderr(acc_norm)),
    ]


def head_scores(trainer, head_task, items, progress=None):
    """A fine-tuned head's outputs for ``items``, as its task lays them out (``head_task.item_outputs``): [n, width]
    option scores or label logits for multiple choice and classification, per-word tag logits for NER (whose
    items are split into windows, ``head_task.scoring_samples``)."""
    count = TruncationCount()
    samples = head_task.scoring_samples(items, count)
    seq = head_task.seq_length()

    def forward(batch, model):
        scores = head_forward(model, flatten_choices(batch, seq))
        return scores, lambda out: out.reshape(batch["tokens"].shape[0], -1)

    if progress is not None and len(samples) != len(items):  # the caller counts items; NER scores windows
        per_item = progress

        def shown(done: int):
            per_item(len(items) * done // len(samples))

        progress = shown
    trainer.task.head_shapes = True
    try:
        table = score_samples(trainer, samples, head_task.scoring_width, forward, progress)
    finally:
        trainer.task.head_shapes = False
    return head_task.item_outputs(items, table)


def head_results(trainer, head_task, items, name: str, progress=None, log: list | None = None) -> list[Result]:
    """The metrics of a fine-tuned head on ``items``, as its task scores them (``head_task.score``: accuracy
    and macro-F1 for classification, entity F1 for NER, ...); ``log``, when given, receives one row per item
    (``head_task.sample_rows``)."""
    outputs = head_scores(trainer, head_task, items, progress)
    if log is not None:
        log += head_task.sample_rows(items, outputs)
    return [Result(name, s.metric, s.value, len(items), s.stderr) for s in head_task.score(items, outputs)]


def generation_scores(trainer, task: GenerationTask, requests, tok, progress=None, log: list | None = None,
                      batch_size: int | None = None,
                      sampling: SamplingConfig | None = None) -> list[Result]:  # fmt: skip
    """Generations for ``requests``, scored by ``task.score``: greedy, ``task.max_new_tokens`` tokens, unless
    ``sampling`` says otherwise (tools/evaluate.py --temperature, --top-k, --top-p, --seed, --num-beams,
    --max-new-tokens). Prompts are batched by token length (``batch_size``, default the micro-batch size); one
    that leaves no room for the new tokens under the model's ``seq_length`` keeps its start (as BioMamba's right
    truncation). Every rank
    generates every request (pipeline parallelism is refused: generation needs the whole model). ``log``, when
    given, receives one row per request: the generation, the reference and the per-item scores."""
    cfg = trainer.cfg
    if cfg.parallel.pipeline_model_parallel_size > 1:
        raise GenerationTaskError(f"{task.name}: generation needs the whole model on each rank; evaluate with "
                                  "--set parallel.pipeline_model_parallel_size=1")  # fmt: skip
    sampling = sampling if sampling is not None else SamplingConfig(max_new_tokens=task.max_new_tokens)
    seq = cfg.model.seq_length
    room = seq - sampling.max_new_tokens
    if room < 1:
        raise GenerationTaskError(f"{task.name}: {sampling.max_new_tokens} new tokens do not fit seq_length {seq}")
    eod = tok.eod_id
    ids = [tok.encode(r.prompt)[:room] or [eod] for r in requests]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    step = batch_size or cfg.train.micro_batch_size
    texts: list[str] = [""] * len(ids)
    model = trainer.model[0]
    for start in range(0, len(order), step):
        batch = order[start : start + step]
        out = generate(model, [ids[i] for i in batch], sampling, vocab_size=cfg.model.vocab_size,
                       max_length=seq, eos_id=eod if task.stop_at_eod else None)  # fmt: skip
        for i, g in zip(batch, out):
            texts[i] = tok.decode([t for t in g.ids if t != eod])
        if progress is not None:
            progress(min(start + step, len(order)))
    scores = task.score(texts, requests)
    if log is not None:
        for i, r in enumerate(requests):
            row = {"id": r.uid, "generation": texts[i], "reference": r.reference}
            log.append(row | {name: values[i] for name, _, values in scores if values})
    n = len(requests)
    return [Result(task.name, name, value, n, mean_stderr(values) if values else None)
            for name, value, values in scores]  # fmt: skip
