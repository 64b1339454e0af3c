"""Our log-likelihood scores against a direct computation written here: a plain single-process forward of the
same model for the logits, log-softmax in float64, item by item."""

from __future__ import annotations

import math

import pytest
import torch

from megatron_biomed.config.loading import load_config
from megatron_biomed.eval.requests import continuation_sample, rolling_samples
from megatron_biomed.eval.runner import EvaluationTask, corpus_perplexity, score_loglik
from megatron_biomed.parallel.env import DistEnv, find_free_port
from megatron_biomed.parallel.initialize import initialize_parallel, shutdown_parallel
from megatron_biomed.tokenizer import load_run_tokenizer
from megatron_biomed.training.loop import Trainer


@pytest.fixture
def scorer(toy):
    cfg = load_config("tiny-biomedlm", overrides=[f"data.tokenizer={toy['tok']}", "model.seq_length=16",
                                                  "train.micro_batch_size=2", "train.global_batch_size=2"])  # fmt: skip
    ctx = initialize_parallel(cfg, DistEnv(0, 1, 0, "127.0.0.1", find_free_port(), "single"))
    trainer = Trainer(cfg, ctx, None, EvaluationTask(cfg), forward_only=True)
    tok = load_run_tokenizer(cfg)
    yield trainer, tok, tok.eod_id
    shutdown_parallel()


def _direct_logprob(model, context_ids: list[int], target: int, seq: int) -> float:
    """log p(target | the last ``seq`` tokens of context) from the model's logits, in float64."""
    ids = context_ids[-seq:]
    s = len(ids)
    with torch.no_grad():
        mask = torch.ones(s, s, dtype=torch.bool).triu(1)[None, None]
        logits = model(torch.tensor([ids]), torch.arange(s)[None], mask)
    return float(torch.log_softmax(logits[0, -1].double(), -1)[target])


def test_continuation_logliks_item_by_item(scorer):
    trainer, tok, eod = scorer
    model = trainer.model[0].eval()
    seq = trainer.task.seq_length()
    cases = [("Which one is a colour?", " red"), ("Pick the colour. ", "blue"), ("", "cat dog"),
             ("tiger " * 12, " green horse"), ("Question: x\nAnswer:", " yes")]  # fmt: skip
    samples = [continuation_sample(tok, c, x, seq, eod) for c, x in cases]
    ours = score_loglik(trainer, samples)
    for (context, cont), (ll, n) in zip(cases, ours.tolist()):
        stripped = context.rstrip()
        cont = context[len(stripped) :] + cont
        ctx_ids = tok.encode(stripped) if stripped else [eod]
        cont_ids = tok.encode(cont)
        want = sum(_direct_logprob(model, ctx_ids + cont_ids[:i], cont_ids[i], seq) for i in range(len(cont_ids)))
        assert n == len(cont_ids)
        assert abs(ll - want) <= 1e-5 * max(1.0, abs(want)), (context, cont, ll, want)


@pytest.mark.parametrize("stride", [None, 5])
def test_rolling_perplexity_against_direct_computation(scorer, stride):
    trainer, tok, eod = scorer
    model = trainer.model[0].eval()
    seq = trainer.task.seq_length()
    text = "the red cat and the blue dog saw a green frog near a black snake " * 3
    ids = tok.encode(text)
    assert len(ids) > 2 * seq
    # Direct: token j (predicted after eod + ids[:j]) with the context the policy gives it. Windows of seq
    # scored tokens each (last one extended left), or sliding windows scoring `stride` tokens.
    full = [eod] + ids
    n = len(ids)
    step = stride or seq
    per_window, begin = [], 0  # (log-likelihood, tokens) of each window
    while begin < n:
        end = min(begin + (seq if begin == 0 else step), n)
        start = max(0, end - seq)
        ll = sum(_direct_logprob(model, full[start : j + 1], full[j + 1], seq) for j in range(begin, end))
        per_window.append((ll, end - begin))
        begin = end
    want = sum(ll for ll, _ in per_window)
    samples = rolling_samples(ids, seq, eod, stride)
    got = score_loglik(trainer, samples)
    assert len(got) == len(per_window)
    for k, ((ll, count), (w_ll, w_count)) in enumerate(zip(got.tolist(), per_window)):
        assert int(count) == w_count, k
        # measured: 1.4e-7 relative at worst (our fp32 forward against the same model's logits in float64)
        assert abs(ll - w_ll) <= 1e-6 * abs(w_ll), (k, ll, w_ll)
    results = {r.metric: r.value for r in corpus_perplexity(trainer, "toy", [text], tok, eod, stride)}
    assert results["perplexity"] == pytest.approx(math.exp(-want / n), rel=1e-5)
    assert results["bits_per_byte"] == pytest.approx(-want / math.log(2) / len(text.encode()), rel=1e-5)


def test_options_sharing_one_prompt_forward_score_as_if_alone(scorer):
    """The packed layout (prompt once, each option attending to it and itself) gives each option the
    log-likelihood it has in a sequence of its own; a prompt too long to pack falls back to one per option."""
    from megatron_biomed.eval.benchmarks import Question
    from megatron_biomed.eval.runner import choice_logliks

    trainer, tok, eod = scorer
    seq = trainer.task.seq_length()
    questions = [
        Question("Which one is a colour?", ("red", "cat dog", "blue"), 0),
        Question("", ("green", "tiger"), 1),
        Question("tiger " * 14, ("red horse", "blue"), 0),  # too long to pack in 16 positions
    ]
    got = choice_logliks(trainer, questions, tok, eod)
    for q, lls in zip(questions, got):
        alone = score_loglik(trainer, [continuation_sample(tok, q.prompt, " " + c, seq, eod) for c in q.choices])
        for ll, (want, _) in zip(lls, alone.tolist()):
            assert abs(ll - want) <= 1e-5 * max(1.0, abs(want)), (q.prompt, ll, want)
