"""Multiple-choice scoring of a Mamba2 model (issue 17: state-space models ignore attention masks). Our
evaluation path (eval/runner.py ``choice_logliks`` / ``benchmark_accuracy``) must give each option the
log-likelihood transformers' ``Mamba2ForCausalLM`` gives that prompt + option scored alone, on peaked weights.
Packing the options behind one prompt with a segment attention mask (what attention families do) would score
option 2 after option 1 in a recurrent model."""

from __future__ import annotations

import pytest
from mamba_reference import hf_logprobs, load_hf_weights, peaked_hf_mamba, peakedness

from megatron_biomed.config.loading import load_config
from megatron_biomed.eval.benchmarks import Question
from megatron_biomed.eval.requests import shared_prompt_samples, split_whitespace
from megatron_biomed.eval.runner import EvaluationTask, benchmark_accuracy, choice_logliks
from megatron_biomed.models.registry import get_family
from megatron_biomed.parallel.env import DistEnv, find_free_port
from megatron_biomed.parallel.initialize import initialize_parallel, shutdown_parallel
from megatron_biomed.tokenizer import load_run_tokenizer
from megatron_biomed.training.loop import Trainer

QUESTIONS = [
    Question("Which one is a colour?", ("red", "cat dog", "blue whale", "green"), 0),
    Question("Pick the colour. ", ("tiger", "yellow", "camel snake"), 1),
    Question("", ("green", "tiger"), 1),  # empty context: the end-of-document token
    Question("Question: Which option names a colour?\nA. frog\nB. white\nAnswer:", (" A", " B"), 1),
]


def test_the_family_decides_whether_options_share_a_prompt(toy):
    """An attention family scores the options of a question in one row behind one prompt (as before); Mamba2
    cannot (a state restart forgets the prompt too): one row per option."""
    for preset, rows in (("tiny-biomedlm", 1), ("tiny-llama", 1), ("tiny-mamba", 3)):
        cfg = load_config(preset, overrides=[f"data.tokenizer={toy['tok']}"])
        tok = load_run_tokenizer(cfg)
        share = get_family(cfg.model.family).segment_isolation(cfg).shares_prompt
        samples = shared_prompt_samples(tok, "Pick the colour.", [" red", " cat", " blue"], 64, tok.eod_id, 3, share)
        assert len(samples) == rows, preset


@pytest.fixture
def mamba_scorer(toy, tmp_path):
    pytest.importorskip("transformers")
    cfg = load_config("tiny-mamba", overrides=[f"data.tokenizer={toy['tok']}", "model.seq_length=64",
                                               "train.micro_batch_size=2", "train.global_batch_size=2"])  # fmt: skip
    ctx = initialize_parallel(cfg, DistEnv(0, 1, 0, "127.0.0.1", find_free_port(), "single"))
    try:
        trainer = Trainer(cfg, ctx, None, EvaluationTask(cfg), forward_only=True)
        hf = peaked_hf_mamba(cfg.model, tmp_path / "hf")
        load_hf_weights(trainer.model[0], cfg.model, tmp_path / "hf")
        tok = load_run_tokenizer(cfg)
        yield trainer, hf, tok, tok.eod_id
    finally:
        shutdown_parallel()


def _alone(hf, tok, eod: int, prompt: str, option: str, vocab: int) -> float:
    """lm-evaluation-harness's log-likelihood of ``option`` after ``prompt``: the prompt's trailing whitespace
    moved to the option, the two tokenised separately, the sequence scored on its own by transformers."""
    context, continuation = split_whitespace(prompt, option)
    ctx = tok.encode(context) if context else [eod]
    cont = tok.encode(continuation)
    full = ctx + cont
    return float(hf_logprobs(hf, full[:-1], full[1:], vocab)[len(ctx) - 1 :].sum())


def test_mamba_option_scores_equal_transformers_scoring_each_option_alone(mamba_scorer):
    trainer, hf, tok, eod = mamba_scorer
    vocab = trainer.cfg.model.vocab_size
    # the weights are peaked: far from uniform (1 / vocab = 0.002)
    top = peakedness(hf, tok.encode(QUESTIONS[0].prompt + " red cat"), vocab)
    assert top > 0.3, top
    got = choice_logliks(trainer, QUESTIONS, tok, eod)
    want = [[_alone(hf, tok, eod, q.prompt, " " + c, vocab) for c in q.choices] for q in QUESTIONS]
    worst = max(abs(a - b) / max(1.0, abs(b)) for ours, theirs in zip(got, want) for a, b in zip(ours, theirs))
    print(f"top-token probability {top:.2f}; option scores vs transformers alone: worst relative difference "
          f"{worst:.1e}")  # fmt: skip
    for q, ours, theirs in zip(QUESTIONS, got, want):
        for a, b in zip(ours, theirs):
            # measured: 9.2e-7 relative at worst (our fp32 forward against transformers' fp32 forward)
            assert abs(a - b) <= 1e-5 * max(1.0, abs(b)), (q.prompt, ours, theirs)
    # acc as benchmark_accuracy computes it: the reference's best option on every question
    hf_best = [max(range(len(w)), key=w.__getitem__) for w in want]
    acc = {r.metric: r.value for r in benchmark_accuracy(trainer, "toy", QUESTIONS, tok, eod)}["acc"]
    assert acc == pytest.approx(sum(b == q.answer for b, q in zip(hf_best, QUESTIONS)) / len(QUESTIONS))
    # Not vacuous: option 1 scored after option 0 (the state carried over, what a packed row without isolation
    # computes) is far from option 1 alone (measured: 2.9 apart).
    ctx, first, second = (tok.encode(t) for t in (QUESTIONS[0].prompt, " " + QUESTIONS[0].choices[0],
                                                   " " + QUESTIONS[0].choices[1]))  # fmt: skip
    after = ctx + first + second
    leaked = float(hf_logprobs(hf, after[:-1], after[1:], vocab)[len(ctx) + len(first) - 1 :].sum())
    assert abs(leaked - want[0][1]) > 1.0, (leaked, want[0][1])
