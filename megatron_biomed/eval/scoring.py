"""Each kind of evaluation input scored on a loaded model, with its progress bar: what a single-task
``tools/evaluate.py`` run and a ``--suite`` run both do, written once (eval/cli.py, eval/suite_run.py).

Every function returns eval/runner.py ``Result`` rows and appends one row per item to ``log``."""

from __future__ import annotations

from megatron_biomed.eval.report import progress_bar
from megatron_biomed.eval.runner import benchmark_accuracy, corpus_perplexity, generation_scores, head_results


def _with_bar(show: bool, what: str, total: int, score):
    update, bar = progress_bar(show, what, total)
    try:
        return score(update)
    finally:
        if bar:
            bar.close()


def score_corpus(trainer, name: str, documents, tok, stride, show: bool, log: list) -> list:
    """Perplexity and bits per byte of held-out ``documents``."""
    return _with_bar(show, f"perplexity {name}", 0,
                     lambda update: corpus_perplexity(trainer, name, documents, tok, tok.eod_id, stride, update,
                                                      log=log))  # fmt: skip


def score_benchmark(trainer, name: str, questions, tok, show: bool, log: list) -> list:
    """Log-likelihood accuracy of zero-/few-shot ``questions``."""
    return _with_bar(show, name, sum(len(q.choices) for q in questions),
                     lambda update: benchmark_accuracy(trainer, name, questions, tok, tok.eod_id, update, log=log))


def score_generation(trainer, name: str, task, requests, tok, sampling, show: bool, log: list) -> list:
    """A generation task's metrics on ``requests``, decoded as ``sampling`` says."""
    return _with_bar(show, f"{name} (generating)", len(requests),
                     lambda update: generation_scores(trainer, task, requests, tok, update, log=log,
                                                      sampling=sampling))  # fmt: skip


def score_head(trainer, head_task, items, name: str, show: bool, log: list) -> list:
    """A fine-tuned head's metrics on ``items``, as its task scores them."""
    return _with_bar(show, f"{name} (head)", len(items),
                     lambda update: head_results(trainer, head_task, items, name, update, log=log))
