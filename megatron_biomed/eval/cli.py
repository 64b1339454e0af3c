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
import hashlib
import json
import logging
import os
import sys
from pathlib import Path

from tqdm import tqdm

from megatron_biomed.checkpoint import RUN_CONFIG, checkpoint_path, load_checkpoint, read_run_config
from megatron_biomed.config.experiment import ConfigError, ExperimentConfig
from megatron_biomed.config.loading import apply_mapping, apply_overrides
from megatron_biomed.eval.benchmarks import benchmark, load_questions, with_fewshot
from megatron_biomed.eval.corpora import load_documents
from megatron_biomed.eval.generation import TASKS as GENERATION_TASKS
from megatron_biomed.eval.generation import load_requests
from megatron_biomed.eval.runner import (
    EvaluationTask,
    benchmark_accuracy,
    corpus_perplexity,
    generation_scores,
    head_results,
)
from megatron_biomed.parallel.env import DistEnv
from megatron_biomed.parallel.layout import data_parallel_size
from megatron_biomed.tokenizer import load_run_tokenizer
from megatron_biomed.training.launch import parallel_session, run_main, start, validate_run_config
from megatron_biomed.training.loop import Trainer
from megatron_biomed.training.tasks import build_task

log = logging.getLogger("megatron_biomed")


def build_arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--load", required=True, help="checkpoint directory (any saved TP/PP layout)")
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
    p.add_argument("--head", choices=["mc", "classify", "ner"], help="score the checkpoint's fine-tuned head")
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
    recorded = read_run_config(args.load)
    cfg = ExperimentConfig()
    inherited = {"model": recorded.get("model", {}), "data": {"tokenizer": recorded.get("data", {}).get("tokenizer")}}
    if args.head:
        inherited["task"] = dict(recorded.get("task", {}))
    apply_mapping(cfg, inherited, f"{args.load}/{RUN_CONFIG}")
    cfg.train.micro_batch_size = 4
    cfg.train.global_batch_size = 0  # 0: micro_batch_size x DP, set once the world size is known
    apply_overrides(cfg, args.overrides)
    if args.head:
        if cfg.task.name != args.head:
            raise ConfigError(f"{args.load} was fine-tuned as task {cfg.task.name!r}, not {args.head!r}")
        if not args.test_file:
            raise ConfigError("--head needs --test-file")
        # Only the test file: not the fine-tune's other training files (task.train_files). Its input format
        # (task.input_format, task.truncation) stays the fine-tune's, so a head trained on MedMCQA + MedQA
        # scores MMLU items laid out as it was trained (--format mmlu).
        cfg.task.train_file, cfg.task.valid_file, cfg.task.train_files = args.test_file, None, []
        cfg.task.format = args.format or cfg.task.format
    return validate_run_config(cfg), recorded


def _progress(enabled: bool, what: str, total: int):
    if not enabled:
        return None, None
    bar = tqdm(total=total, desc=what, unit="seq", file=sys.stderr, leave=False)

    def update(done: int):
        bar.n = done
        bar.refresh()

    return update, bar


def format_table(rows: list[dict]) -> str:
    head = f"{'task':<28} {'metric':<16} {'value':>10} {'stderr':>8} {'n':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        se = "" if r["stderr"] is None or r["stderr"] != r["stderr"] else f"{r['stderr']:.4f}"
        lines.append(f"{r['task']:<28} {r['metric']:<16} {r['value']:>10.4f} {se:>8} {r['n']:>8}")
    return "\n".join(lines)


def write_report(path: str, report: dict) -> None:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, out)


def main(argv=None) -> int:
    args = build_arg_parser().parse_args(argv)
    return run_main(lambda: evaluate(args))


def evaluate(args) -> int:
    cfg, recorded = eval_config(args)
    corpora = _pairs(args.corpus, "--corpus")
    benches = _pairs(args.benchmark, "--benchmark")
    fewshot = dict(_pairs(args.fewshot, "--fewshot"))
    if not (corpora or benches or args.head):
        raise ConfigError("nothing to evaluate: give --corpus, --benchmark or --head")
    if args.log_samples and not args.output:
        raise ConfigError("--log-samples writes into the report: give --output")
    env = start(cfg, _global_batch_from_world)
    tok, docs, questions, requests = _prepare_inputs(cfg, args, corpora, benches, fewshot)
    head_task = build_task(cfg, None) if args.head else None
    with parallel_session(cfg, env) as ctx:
        return _run(cfg, ctx, env, args, tok, docs, questions, head_task, requests)


def _global_batch_from_world(cfg: ExperimentConfig, env: DistEnv) -> None:
    if not cfg.train.global_batch_size:  # 0: micro_batch_size x DP
        cfg.train.global_batch_size = cfg.train.micro_batch_size * max(1, data_parallel_size(cfg, env.world_size))


def _prepare_inputs(cfg, args, corpora, benches, fewshot):
    """Everything read and checked before the process group starts: tokenizer, corpora, benchmark items."""
    tok = load_run_tokenizer(cfg)
    docs = {name: load_documents(path, limit=args.limit, vocab_size=tok.vocab_size) for name, path in corpora}
    questions, requests = {}, {}
    for name, path in benches:
        if name in GENERATION_TASKS:
            task = GENERATION_TASKS.get(name)
            requests[name] = (task, load_requests(task, path, tok, skip_bad=args.skip_bad, limit=args.limit))
            continue
        bench = benchmark(name)
        qs = load_questions(bench, path, cop_base=args.medmcqa_cop_base, skip_bad=args.skip_bad)
        shots = load_questions(bench, fewshot[name], cop_base=args.medmcqa_cop_base) if name in fewshot else []
        if args.num_fewshot and not shots:
            raise ConfigError(f"--num-fewshot {args.num_fewshot}: give --fewshot {name}=FILE")
        qs = qs[: args.limit] if args.limit else qs
        same_split = name in fewshot and Path(fewshot[name]).resolve() == Path(path).resolve()
        questions[name] = with_fewshot(bench, qs, shots, args.num_fewshot, args.fewshot_seed, same_split=same_split)
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
    eod = tok.eod_id
    for name, documents in docs.items():
        update, bar = _progress(show, f"perplexity {name}", 0)
        results += corpus_perplexity(trainer, name, documents, tok, eod, args.stride, update,
                                     log=samples.setdefault(name, []))  # fmt: skip
        if bar:
            bar.close()
    for name, qs in questions.items():
        update, bar = _progress(show, name, sum(len(q.choices) for q in qs))
        results += benchmark_accuracy(trainer, name, qs, tok, eod, update, log=samples.setdefault(name, []))
        if bar:
            bar.close()
    for name, (task, reqs) in requests.items():
        update, bar = _progress(show, f"{name} (generating)", len(reqs))
        results += generation_scores(trainer, task, reqs, tok, update, log=samples.setdefault(name, []))
        if bar:
            bar.close()
    if head_task is not None:
        items = head_task.train_items[: args.limit] if args.limit else head_task.train_items
        update, bar = _progress(show, f"{args.head} head", len(items))
        name = f"{cfg.task.format}:{args.head}"
        results += head_results(trainer, head_task, items, name, update, log=samples.setdefault(name, []))
        if bar:
            bar.close()
    if rank0:
        config_text = (path / RUN_CONFIG).read_text()
        meta = {
            "checkpoint": str(path),
            "iteration": int(path.name.split("_")[-1]),
            "config_hash": hashlib.sha256(config_text.encode()).hexdigest()[:16],
        }
        rows = [{"task": r.task, "metric": r.metric, "value": r.value, "n": r.n, "stderr": r.stderr, **meta}
                for r in results]  # fmt: skip
        print(format_table(rows), flush=True)
        if args.output:
            extra = {"samples": samples} if args.log_samples else {}
            write_report(args.output, {"results": rows, "layout": ctx.describe(), **meta, **extra})
            log.info("report written to %s", args.output)
    return 0
