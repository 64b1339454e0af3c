"""``tools/evaluate.py``: perplexity per corpus, zero-/few-shot benchmarks, fine-tuned heads, from a checkpoint.

    python tools/evaluate.py --load ckpt --corpus pubmed=data/pubmed_valid_text_document --corpus c4=c4.jsonl \
        --benchmark pubmedqa=pqal.json --benchmark mmlu_anatomy=anatomy_test.csv --output eval.json
    torchrun --nproc-per-node 4 tools/evaluate.py --load ckpt-medqa --head mc --test-file test.jsonl --format medqa \
        --set parallel.tensor_model_parallel_size=2 --set parallel.pipeline_model_parallel_size=2

The model (and tokenizer) come from the checkpoint's recorded config; the layout of this run is its own
(``--set parallel.*``). Results: a table on the console and a JSON report written atomically.
"""

from __future__ import annotations

import argparse
import logging

from megatron_biomed.checkpoint import RUN_CONFIG, checkpoint_path, load_checkpoint, read_run_config
from megatron_biomed.config.experiment import ConfigError, ExperimentConfig
from megatron_biomed.eval.benchmarks import prepare_questions
from megatron_biomed.eval.config import checkpoint_eval_config, generation_sampling, global_batch_from_world
from megatron_biomed.eval.corpora import load_documents
from megatron_biomed.eval.generation import TASKS as GENERATION_TASKS
from megatron_biomed.eval.generation import load_requests
from megatron_biomed.eval.report import checkpoint_meta, format_table, write_report
from megatron_biomed.eval.runner import EvaluationTask
from megatron_biomed.eval.scoring import score_benchmark, score_corpus, score_generation, score_head
from megatron_biomed.eval.suite import head_task_names
from megatron_biomed.eval.suite_run import run_suite
from megatron_biomed.tokenizer import load_run_tokenizer
from megatron_biomed.training.launch import parallel_session, run_main, start
from megatron_biomed.training.loop import Trainer
from megatron_biomed.training.tasks import build_task

log = logging.getLogger("megatron_biomed")


def build_arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--load", required=True, help="checkpoint directory (any saved TP/PP layout)")
    p.add_argument("--suite", metavar="FILE",
                   help="a suite YAML (eval/suite.py): every task it names in one run, one report")  # fmt: skip
    p.add_argument("--suite-finetune", action="store_true",
                   help="with --suite: fine-tune every head entry from --load, then score it")  # fmt: skip
    p.add_argument("--suite-workdir", metavar="DIR",
                   help="with --suite: where fine-tuned heads are saved (default: <--output>.finetuned)")  # fmt: skip
    p.add_argument("--corpus", action="append", default=[], metavar="NAME=PATH",
                   help="held-out text: a .bin/.idx prefix, a .jsonl ('text' field) or a text file")  # fmt: skip
    p.add_argument("--benchmark", action="append", default=[], metavar="NAME=PATH",
                   help="medqa, medmcqa, pubmedqa, bioasq or mmlu_<subject> (log-likelihood), or a generation "
                        f"task ({', '.join(GENERATION_TASKS.names())}), with its file")  # fmt: skip
    p.add_argument("--fewshot", action="append", default=[], metavar="NAME=PATH", help="exemplar file per benchmark")
    p.add_argument("--num-fewshot", type=int, default=0)
    p.add_argument("--fewshot-seed", type=int, default=1234,
                   help="seed of the exemplar draw (MMLU takes the first N rows of its --fewshot file, as the harness)")
    p.add_argument("--weights", choices=["model", "ema"], default="model",
                   help="the checkpoint's weights to score: the model's, or their moving average (optimizer.ema_decay; "
                        "BioMamba's recipe evaluates the average)")  # fmt: skip
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help="generation tasks: new tokens per item (default: the task's own, e.g. 512 for bc5cdr_re)")
    p.add_argument("--temperature", type=float, default=0.0, help="generation tasks: 0 = greedy (the default)")
    p.add_argument("--top-k", type=int, default=0, help="generation tasks: sample among the k likeliest (0 = all)")
    p.add_argument("--top-p", type=float, default=1.0, help="generation tasks: nucleus sampling mass (1 = all)")
    p.add_argument("--seed", type=int, default=1234, help="generation tasks: sampling seed")
    p.add_argument("--num-beams", type=int, default=1,
                   help="generation tasks: beam search with this many beams (transformers' num_beams; no KV cache)")
    p.add_argument("--head", metavar="TASK",
                   help="score the checkpoint's fine-tuned head: the head task it was fine-tuned as (mc, classify, "
                        "ner, similarity, multilabel, ...: training/tasks.py TASKS)")  # fmt: skip
    p.add_argument("--test-file", help="with --head: the items to score")
    p.add_argument("--format", help="with --head: the test file's format (default: the fine-tune's task.format)")
    p.add_argument("--medmcqa-cop-base", type=int, choices=[0, 1])
    p.add_argument("--stride", type=int, default=None, help="perplexity: sliding-window stride (default seq_length)")
    p.add_argument("--limit", type=int, default=None, help="at most N items / documents per task (quick runs)")
    p.add_argument("--skip-bad", action="store_true", help="skip bad benchmark records (counted) instead of stopping")
    p.add_argument("--output", help="JSON report path")
    p.add_argument("--log-samples", action="store_true",
                   help="with --output: each document's, question's and head item's scores in the report")  # fmt: skip
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    return p


def _pairs(values: list[str], flag: str) -> list[tuple[str, str]]:
    out = []
    for v in values:
        if "=" not in v:
            raise ConfigError(f"{flag} {v!r}: expected NAME=PATH")
        name, path = v.split("=", 1)
        out.append((name.strip(), path.strip()))
    return out


def eval_config(args) -> tuple[ExperimentConfig, dict]:
    if args.head and args.head not in head_task_names():
        raise ConfigError(f"--head {args.head}: not a head task; head tasks: {', '.join(head_task_names())}")
    recorded = read_run_config(args.load)
    cfg = checkpoint_eval_config(recorded, f"{args.load}/{RUN_CONFIG}", args.overrides, args.head, args.test_file,
                                 args.format)  # fmt: skip
    return cfg, recorded


def main(argv=None) -> int:
    args = build_arg_parser().parse_args(argv)
    return run_main(lambda: evaluate(args))


def evaluate(args) -> int:
    if args.suite:
        return run_suite(args)
    if args.suite_finetune or args.suite_workdir:
        raise ConfigError("--suite-finetune / --suite-workdir go with --suite")
    cfg, recorded = eval_config(args)
    corpora = _pairs(args.corpus, "--corpus")
    benches = _pairs(args.benchmark, "--benchmark")
    fewshot = dict(_pairs(args.fewshot, "--fewshot"))
    if not (corpora or benches or args.head):
        raise ConfigError("nothing to evaluate: give --corpus, --benchmark or --head")
    if args.log_samples and not args.output:
        raise ConfigError("--log-samples writes into the report: give --output")
    env = start(cfg, global_batch_from_world)
    tok, docs, questions, requests = _prepare_inputs(cfg, args, corpora, benches, fewshot)
    head_task = build_task(cfg, None) if args.head else None
    with parallel_session(cfg, env) as ctx:
        return _run(cfg, ctx, env, args, tok, docs, questions, head_task, requests)


def _prepare_inputs(cfg, args, corpora, benches, fewshot):
    """Everything read and checked before the process group starts: tokenizer, corpora, benchmark items."""
    tok = load_run_tokenizer(cfg)
    docs = {name: load_documents(path, limit=args.limit, vocab_size=tok.vocab_size) for name, path in corpora}
    questions, requests = {}, {}
    for name, path in benches:
        if name in GENERATION_TASKS:
            task = GENERATION_TASKS.get(name)
            reqs = load_requests(task, path, tok, skip_bad=args.skip_bad, limit=args.limit)
            requests[name] = (task, reqs, generation_sampling(args, task))
            continue
        questions[name] = prepare_questions(name, path, fewshot.get(name), args.num_fewshot, args.fewshot_seed,
                                            cop_base=args.medmcqa_cop_base, skip_bad=args.skip_bad,
                                            limit=args.limit)  # fmt: skip
    return tok, docs, questions, requests


def _run(cfg, ctx, env, args, tok, docs, questions, head_task, requests) -> int:
    rank0 = env.rank == 0
    task = EvaluationTask(cfg, head_task)
    trainer = Trainer(cfg, ctx, None, task, forward_only=True)
    path = checkpoint_path(args.load)
    load_checkpoint(path, trainer.model, weights_only=True, weights_from=args.weights)
    if rank0:
        log.info("evaluating %s, weights %s (layout %s)", path, args.weights, ctx.describe())
    results = []
    samples = {}  # task -> one row per item (--log-samples)
    show = rank0 and not args.no_progress
    for name, documents in docs.items():
        results += score_corpus(trainer, name, documents, tok, args.stride, show, samples.setdefault(name, []))
    for name, qs in questions.items():
        results += score_benchmark(trainer, name, qs, tok, show, samples.setdefault(name, []))
    for name, (task, reqs, sampling) in requests.items():
        results += score_generation(trainer, name, task, reqs, tok, sampling, show, samples.setdefault(name, []))
    if head_task is not None:
        items = head_task.train_items[: args.limit] if args.limit else head_task.train_items
        name = f"{cfg.task.format}:{args.head}"
        results += score_head(trainer, head_task, items, name, show, samples.setdefault(name, []))
    if rank0:
        meta = checkpoint_meta(path)
        rows = [{"task": r.task, "metric": r.metric, "value": r.value, "n": r.n, "stderr": r.stderr, **meta}
                for r in results]  # fmt: skip
        print(format_table(rows), flush=True)
        if args.output:
            extra = {"samples": samples} if args.log_samples else {}
            write_report(args.output, {"results": rows, "layout": ctx.describe(), **meta, **extra})
            log.info("report written to %s", args.output)
    return 0
