"""Benchmark scoring throughput: our evaluator against a plain transformers forward, same model, same items.

One process. The same GPT-2 shape (random weights) in both:

  (a) ours:     megatron_biomed.eval.runner.benchmark_accuracy on a forward-only Trainer (megatron-core
                GPTModel, local spec): every (question, option) request a fixed-length sample, the options
                of a question in the same micro-batch, per-token losses from the vocab-parallel cross-entropy;
  (b) baseline: transformers' GPT2LMHeadModel, the same requests one batch of ``--batch`` at a time,
                right-padded to the longest, log-softmax over the full logits and the continuation tokens
                gathered (what lm-evaluation-harness's HF backend does).

Scored tokens per second = continuation tokens scored / wall time. Both run ``--rounds`` times, alternating;
the table shows the median.

    OMP_NUM_THREADS=2 python benchmarks/evaluate.py [--hidden 256 --layers 4 --seq 256 --questions 64]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def _questions(n: int, seed: int):
    from toydata import ANIMALS, COLOURS

    from megatron_biomed.eval.benchmarks import Question

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        context = " ".join(rng.choice(ANIMALS + COLOURS) for _ in range(rng.randint(40, 120)))
        choices = tuple(" ".join(rng.sample(ANIMALS, 3)) for _ in range(4))
        out.append(Question(f"Question: {context}\nAnswer:", choices, rng.randrange(4)))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--questions", type=int, default=64)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)

    from toydata import make_tokenizer
    from transformers import GPT2Config, GPT2LMHeadModel

    from megatron_biomed.config.loading import load_config
    from megatron_biomed.eval.requests import continuation_sample, split_whitespace
    from megatron_biomed.eval.runner import EvaluationTask, benchmark_accuracy
    from megatron_biomed.parallel.env import DistEnv, find_free_port
    from megatron_biomed.parallel.initialize import initialize_parallel
    from megatron_biomed.tokenizer import load_run_tokenizer
    from megatron_biomed.training.launch import setup_logging
    from megatron_biomed.training.loop import Trainer

    setup_logging(1)
    tmp = Path(tempfile.mkdtemp())
    tok_dir = make_tokenizer(tmp / "tok")
    cfg = load_config("tiny-biomedlm", overrides=[
        f"data.tokenizer={tok_dir}", f"model.num_layers={args.layers}", f"model.hidden_size={args.hidden}",
        f"model.num_attention_heads={args.heads}", f"model.seq_length={args.seq}",
        f"train.micro_batch_size={args.batch}", f"train.global_batch_size={args.batch}",
    ])  # fmt: skip
    ctx = initialize_parallel(cfg, DistEnv(0, 1, 0, "127.0.0.1", find_free_port(), "single"))
    trainer = Trainer(cfg, ctx, None, EvaluationTask(cfg), forward_only=True)
    tok = load_run_tokenizer(cfg)
    eod = tok.eod_id
    questions = _questions(args.questions, 1)

    hf = GPT2LMHeadModel(GPT2Config(vocab_size=cfg.model.padded_vocab_size(1), n_positions=args.seq,
                                    n_embd=args.hidden, n_layer=args.layers, n_head=args.heads)).eval()  # fmt: skip
    requests = []
    for q in questions:
        for c in q.choices:
            context, cont = split_whitespace(q.prompt, " " + c)
            requests.append((tok.encode(context), tok.encode(cont)))
    scored_tokens = sum(len(c) for _, c in requests)
    assert all(len(s["tokens"]) == args.seq for s in [continuation_sample(tok, questions[0].prompt, " x", args.seq,
                                                                           eod)])  # fmt: skip

    def ours():
        benchmark_accuracy(trainer, "bench", questions, tok, eod)

    @torch.no_grad()
    def baseline():
        for i in range(0, len(requests), args.batch):
            chunk = requests[i : i + args.batch]
            seqs = [(ctx_ids + cont)[-(args.seq + 1) :][:-1] for ctx_ids, cont in chunk]
            width = max(len(s) for s in seqs)
            ids = torch.tensor([s + [eod] * (width - len(s)) for s in seqs])
            logp = torch.log_softmax(hf(ids).logits.float(), -1)
            for row, (ctx_ids, cont) in enumerate(chunk):
                full = (ctx_ids + cont)[-(args.seq + 1) :]
                n = len(full) - 1
                pos = torch.arange(n - len(cont), n)
                logp[row, pos, torch.tensor(full[-len(cont) :])].sum()

    times = {"ours (megatron-core forward-only on the loop)": [], "transformers GPT2LMHeadModel": []}
    fns = dict(zip(times, (ours, baseline)))
    for r in range(args.rounds):
        for name in (list(times) if r % 2 == 0 else list(times)[::-1]):
            start = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - start)
    print(f"{len(questions)} questions x 4 options = {len(requests)} requests, {scored_tokens} scored tokens; "
          f"GPT-2 shape hidden {args.hidden}, {args.layers} layers, seq {args.seq}, batch {args.batch}, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    print(f"{'variant':<48} {'median s':>10} {'scored tokens/s':>16}")
    rates = {}
    for name, ts in times.items():
        med = statistics.median(ts)
        rates[name] = scored_tokens / med
        print(f"{name:<48} {med:>10.3f} {rates[name]:>16.1f}")
    a, b = rates.values()
    print(f"ratio ours / transformers: {a / b:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
