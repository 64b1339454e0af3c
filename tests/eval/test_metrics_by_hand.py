"""The evaluation metrics against values computed here by hand, from the definitions (lm-evaluation-harness,
the Hugging Face perplexity guide), out of per-token log-probs we know exactly.

A stub language model stands in for the network: log p(label | previous token, position in the window) from
fixed random float64 tables (peaked: a wrong token or position moves the score by several nats). The forward
passes of eval/runner.py run on it (the scoring pass of training/scoring.py is replaced by one batched call of
the stub; tests/eval/test_scoring_reference.py and test_evaluate_tool.py hold that pass to a real model and to
every layout). What is checked:

* each option's log-likelihood: lm-evaluation-harness's request (the context's trailing whitespace moved to the
  continuation, the continuation's tokens those of the whole text past the context's, an empty context the
  end-of-document token, a long context cut from the left), packed behind one prompt or scored alone;
* acc and acc_norm (harness ``ConfigurableTask.process_results``: ``argmax(lls)`` and
  ``argmax(lls / [len(choice) for choice in choices])``, the choice's length in characters, without the
  target delimiter) on choices of different lengths where the two pick different answers;
* the rolling windows of perplexity, window by window and position by position: the Hugging Face guide's
  strided loop (``max_length`` = our ``seq_length`` inputs + the token they predict), each window scoring only
  the tokens past the previous one, the last window extended to the left as the harness's rolling windows do;
* perplexity, nll per token and bits per byte (harness ``count_bytes``: UTF-8 bytes) of non-ASCII documents.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from toydata import make_tokenizer

from megatron_biomed.config.loading import load_config
from megatron_biomed.eval import runner
from megatron_biomed.eval.benchmarks import Question
from megatron_biomed.eval.requests import rolling_samples
from megatron_biomed.tokenizer import load_run_tokenizer

SEQ = 16
LN2 = math.log(2)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tokenizer (the toy byte-level BPE, trained in a fraction of a second), the stub model, and a stand-in
    for the trainer with the attributes the runner reads."""
    cfg = load_config("tiny-biomedlm", overrides=[f"data.tokenizer={make_tokenizer(tmp_path_factory.mktemp('t'))}"])
    tok = load_run_tokenizer(cfg)
    vocab = cfg.model.vocab_size
    gen = torch.Generator().manual_seed(17)
    prev = 4.0 * torch.randn(vocab, vocab, generator=gen, dtype=torch.float64)
    pos = 4.0 * torch.randn(SEQ, vocab, generator=gen, dtype=torch.float64)
    logp = torch.log_softmax(prev[:, None, :] + pos[None, :, :], -1)  # [previous token, position, label]

    def model(tokens, position_ids, mask, labels):
        """Per-token losses, as our models return them when given labels."""
        return -logp[tokens, position_ids.expand_as(tokens), labels]

    trainer = SimpleNamespace(cfg=cfg, task=SimpleNamespace(seq_length=lambda: SEQ))
    return SimpleNamespace(tok=tok, eod=tok.eod_id, logp=logp, model=model, trainer=trainer)


@pytest.fixture
def stub_scoring(setup, monkeypatch):
    """The runner's scoring pass on the stub: every sample in one batch, each sample's row of values."""

    def score_samples(trainer, samples, width, forward, progress=None):
        batch = {k: torch.stack([s[k] for s in samples]) for k in samples[0]}
        out, values_of = forward(batch, setup.model)
        return values_of(out).double().view(len(samples), width)

    monkeypatch.setattr(runner, "score_samples", score_samples)
    return setup


def _logp(s, full: list[int], p: int, start: int) -> float:
    """log p(full[p + 1]) predicted at position p of ``full`` by a window whose input starts at ``start``."""
    return float(s.logp[full[p], p - start, full[p + 1]])


def _harness_loglik(s, prompt: str, choice: str) -> tuple[float, int]:
    """lm-evaluation-harness's loglikelihood of the request (prompt, " " + choice), and its token count
    (``TemplateLM._encode_pair``: the continuation's tokens are those of context + continuation past the
    context's own; an empty context is the end-of-document token and the continuation encoded alone)."""
    context = prompt.rstrip()
    continuation = prompt[len(context) :] + " " + choice
    if context:
        ctx = s.tok.encode(context)
        cont = s.tok.encode(context + continuation)[len(ctx) :]
    else:
        ctx, cont = [s.eod], s.tok.encode(continuation)
    full = ctx + cont
    start = max(0, len(full) - 1 - SEQ)  # the model sees the last SEQ tokens before the last one
    return sum(_logp(s, full, p, start) for p in range(len(ctx) - 1, len(full) - 1)), len(cont)


QUESTIONS = [
    Question("Which one is a colour?", ("red", "tiger horse frog", "ß"), 0),
    Question("Pick the colour. ", ("café au lait", "no"), 1),  # trailing space moves to the continuation
    Question("", ("green", "β-lactam"), 1),  # empty context: the end-of-document token
    Question("tiger " * 12, ("red horse", "blue"), 0),  # too long to pack in SEQ positions: alone, cut left
]


def test_option_logliks_by_hand(stub_scoring):
    s = stub_scoring
    got = runner.choice_logliks(s.trainer, QUESTIONS, s.tok, s.eod)
    worst = 0.0
    for q, lls in zip(QUESTIONS, got):
        assert len(lls) == len(q.choices)
        for choice, ll in zip(q.choices, lls):
            want, _ = _harness_loglik(s, q.prompt, choice)
            worst = max(worst, abs(ll - want) / abs(want))
            # the runner sums float32 token losses; measured: 4.1e-8 relative at worst
            assert ll == pytest.approx(want, rel=1e-6), (q.prompt, choice)
    print(f"option log-likelihoods vs by hand: worst relative difference {worst:.1e}")


# Log-likelihoods chosen so that acc and acc_norm pick different options, and so that normalising by anything
# but the choice's characters (its UTF-8 bytes, its tokens, the delimiter's space counted) picks yet another.
DESIGNED = [
    # "ß" is 1 character, 2 bytes: per character "ab" wins (-1.25 > -1.5), per byte "ß" (-0.75 > -1.25)
    (Question("Q1", ("ß", "ab"), 1), [-1.5, -2.5], 0, 1),
    # "red" is 1 token, "tiger horse frog" 3: per character the long one wins, per token "red" (-2 > -2.33)
    (Question("Q2", ("red", "tiger horse frog"), 0), [-2.0, -7.0], 0, 1),
    # per character "yes" (-0.33 > -0.4 > -0.45), per token (1 each) "no"
    (Question("Q3", ("yes", "no", "maybe"), 0), [-1.0, -0.9, -2.0], 1, 0),
]


def test_acc_and_acc_norm_pick_by_hand(setup, monkeypatch):
    """benchmark_accuracy on known log-likelihoods: each question's picks and the aggregates (with the harness's
    standard error: sample standard deviation / sqrt(n))."""
    questions = [q for q, *_ in DESIGNED]
    monkeypatch.setattr(runner, "choice_logliks", lambda *a, **k: [ll for _, ll, *_ in DESIGNED])
    # the premise of the design: the token counts named in the comments above
    assert [len(setup.tok.encode(" " + c)) for c in ("red", "tiger horse frog", "yes", "no", "maybe")] == [
        1,
        3,
        1,
        1,
        1,
    ]
    log = []
    results = {r.metric: r for r in runner.benchmark_accuracy(setup.trainer, "toy", questions, setup.tok, 0, log=log)}
    picks = []
    for (q, lls, pred, pred_norm), row in zip(DESIGNED, log):
        # by hand from the definitions: argmax of the log-likelihoods, and of them per character of the choice
        assert pred == max(range(len(lls)), key=lambda i: lls[i])
        assert pred_norm == max(range(len(lls)), key=lambda i: lls[i] / len(q.choices[i]))
        assert pred != pred_norm  # the two metrics disagree on every question
        assert (row["pred"], row["pred_norm"], row["answer"], row["logliks"]) == (pred, pred_norm, q.answer, lls)
        picks.append((float(pred == q.answer), float(pred_norm == q.answer)))
    for k, metric in enumerate(("acc", "acc_norm")):
        hits = [p[k] for p in picks]
        mean = sum(hits) / len(hits)
        stderr = math.sqrt(sum((h - mean) ** 2 for h in hits) / (len(hits) - 1) / len(hits))
        r = results[metric]
        assert (r.value, r.n) == (pytest.approx(mean, abs=1e-12), len(hits)), metric
        assert r.stderr == pytest.approx(stderr, abs=1e-12), metric
    assert results["acc"].value == pytest.approx(1 / 3) and results["acc_norm"].value == pytest.approx(2 / 3)


def _hf_windows(n: int, seq: int, stride: int | None) -> list[tuple[int, int, int]]:
    """(start, first, end) per window over ``full`` = [eod] + n tokens: the window feeds ``full[start : end - 1]``
    and scores the labels ``full[first : end]``. The Hugging Face perplexity guide's loop with ``max_length`` =
    seq + 1 (our seq inputs plus the token they predict) and windows beginning every ``stride`` tokens (no
    stride: ``seq``, the harness's disjoint rolling windows); the last window's input extended to the left to a
    full ``max_length``, as the harness's rolling windows do (the guide leaves it shorter)."""
    total, length, stride = n + 1, seq + 1, stride or seq
    out, prev_end = [], 1  # full[0], the end-of-document token, is never predicted
    for begin in range(0, total, stride):
        end = min(begin + length, total)
        out.append((max(0, end - length), prev_end, end))
        prev_end = end
        if end == total:
            break
    return out


@pytest.mark.parametrize("n,seq,stride", [(1, 4, None), (4, 4, None), (9, 4, None), (10, 4, 3), (11, 4, 3),
                                          (10, 4, 1), (23, 6, 4), (6, 6, 2)])  # fmt: skip
def test_rolling_windows_position_by_position(n, seq, stride):
    ids = list(range(10, 10 + n))
    full = [0] + ids
    windows = _hf_windows(n, seq, stride)
    got = rolling_samples(ids, seq, 0, stride)
    assert len(got) == len(windows)
    for (start, first, end), w in zip(windows, got):
        inputs = full[start : end - 1]
        pad = seq - len(inputs)
        assert w["tokens"].tolist() == inputs + [0] * pad
        assert w["labels"].tolist() == full[start + 1 : end] + [0] * pad
        assert w["loss_mask"].tolist() == [float(start + i + 1 >= first) for i in range(len(inputs))] + [0.0] * pad
        assert w["position_ids"].tolist() == list(range(seq))
    scored = [t for start, first, end in windows for t in full[first:end]]
    assert scored == ids  # every token once, in order


DOCS = [
    "Le café naïve: β-lactam résistance à 37 °C, 𝛼-hélice.",
    "the red cat and the blue dog saw a green frog near a black snake " * 2 + "über",
    "ß",
]


@pytest.mark.parametrize("stride", [None, 5])
def test_perplexity_and_bits_per_byte_by_hand(stub_scoring, stride):
    s = stub_scoring
    as_ids = s.tok.encode(DOCS[1])  # a document given as token ids (a .bin/.idx corpus): its bytes decoded
    docs = [DOCS[0], as_ids, DOCS[2]]
    log = []
    results = {r.metric: r for r in runner.corpus_perplexity(s.trainer, "toy", docs, s.tok, s.eod, stride, log=log)}
    nll = tokens = nbytes = 0
    for text, row in zip(DOCS, log):
        ids = s.tok.encode(text)
        full = [s.eod] + ids
        want = sum(_logp(s, full, p - 1, start)
                   for start, first, end in _hf_windows(len(ids), SEQ, stride) for p in range(first, end))  # fmt: skip
        size = len(text.encode("utf-8"))
        assert size > len(text)  # non-ASCII: bytes are not characters
        # measured: 2.1e-8 relative at worst (float32 token losses summed)
        assert row["loglik"] == pytest.approx(want, rel=1e-6), text
        assert (row["tokens"], row["bytes"]) == (len(ids), size), text
        nll, tokens, nbytes = nll - want, tokens + len(ids), nbytes + size
    assert results["nll_per_token"].value == pytest.approx(nll / tokens, rel=1e-6)
    assert results["perplexity"].value == pytest.approx(math.exp(nll / tokens), rel=1e-6)
    assert results["bits_per_byte"].value == pytest.approx(nll / LN2 / nbytes, rel=1e-6)
    assert (results["perplexity"].n, results["bits_per_byte"].n) == (tokens, nbytes)
