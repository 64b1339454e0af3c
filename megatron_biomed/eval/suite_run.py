"""``tools/evaluate.py --suite FILE --load CKPT``: every entry of a suite (eval/suite.py) in one run, one report.

The order of work, on every rank (torchrun, any TP/PP layout, like the rest of evaluate):

1. The suite is loaded and checked, then every entry's inputs are read and checked (benchmark questions, corpora,
   generation requests, head test items; the fine-tunes' training files) -- all before any process group.
2. Head entries to fine-tune (``--suite-finetune``, or no ``load:``) are trained from ``--load`` with
   ``tools/finetune.py``'s own code (finetune/cli.py ``finetune_config``, training/pretrain.py ``train``), each
   in the suite's process group, and saved under ``--suite-workdir``.
3. ONE forward-only Trainer holds the body of ``--load``: every benchmark, perplexity and generation entry is scored
   on it (one model load), batched as the single-task runs batch (eval/runner.py). Entries naming a checkpoint of
   their own (``load:``, e.g. an SFT model for a generation task) share one load per checkpoint the same way.
4. Each head entry: a Trainer with its head, its fine-tuned checkpoint loaded, its task's ``score``.
5. Under pipeline parallelism generation needs the whole model on each rank (eval/runner.py refuses PP > 1): the
   generation entries then run on a second load of the body at PP 1, same TP, the other ranks data-parallel.

The report (rank 0): each entry's metrics (value, n, stderr), its main metric, the macro average of main metrics per
task type and the average of the type averages (BLURB's score, eval/suite.py ``summarize``); one table on the console.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from megatron_biomed.checkpoint import RUN_CONFIG, checkpoint_path, load_checkpoint, read_run_config
from megatron_biomed.config.experiment import ConfigError, ExperimentConfig
from megatron_biomed.eval.benchmarks import prepare_questions
from megatron_biomed.eval.config import checkpoint_eval_config, generation_sampling, global_batch_from_world
from megatron_biomed.eval.corpora import load_documents
from megatron_biomed.eval.generation import TASKS as GENERATION_TASKS
from megatron_biomed.eval.generation import load_requests
from megatron_biomed.eval.report import checkpoint_meta, write_report
from megatron_biomed.eval.runner import EvaluationTask
from megatron_biomed.eval.scoring import score_benchmark, score_corpus, score_generation, score_head
from megatron_biomed.eval.suite import NOT_IN_OVERALL, Suite, SuiteEntry, SuiteError, load_suite, main_metric, summarize
from megatron_biomed.finetune.cli import build_arg_parser as finetune_arg_parser
from megatron_biomed.finetune.cli import finetune_config
from megatron_biomed.parallel.initialize import initialize_parallel
from megatron_biomed.parallel.layout import validate_layout
from megatron_biomed.tokenizer import load_run_tokenizer
from megatron_biomed.training.launch import parallel_session, start
from megatron_biomed.training.loop import Trainer
from megatron_biomed.training.pretrain import token_info, train
from megatron_biomed.training.tasks import build_task

log = logging.getLogger("megatron_biomed")

BODY_RUNNERS = ("benchmark", "perplexity", "generation")


@dataclass
class HeadJob:
    """A head entry, ready: the config it is scored under, its task (test items read), the checkpoint to load;
    for a fine-tune also the training config and task (training items read)."""

    entry: SuiteEntry
    cfg: ExperimentConfig
    task: Any
    load: Path
    train_cfg: ExperimentConfig | None = None
    train_task: Any = None
    tokens: Any = None


@dataclass
class BodyGroup:
    """The benchmark, perplexity and generation entries that score one checkpoint (``--load``, or the ``load:``
    they name): one model load for all of them, their inputs read with that checkpoint's tokenizer."""

    load: str
    cfg: ExperimentConfig
    tok: Any
    entries: list[SuiteEntry]
    inputs: dict = field(default_factory=dict)


@dataclass
class Scored:
    rows: list = field(default_factory=list)  # runner.Result rows
    samples: list = field(default_factory=list)
    checkpoint: str = ""
    seconds: float = 0.0  # wall time of the scoring (the model load not counted)


def run_suite(args) -> int:
    """Run ``args.suite`` against ``args.load`` (see the module docstring); 0 when every entry was scored."""
    if args.corpus or args.benchmark or args.head or args.fewshot or args.num_fewshot:
        raise ConfigError("--suite names its own tasks: drop --corpus, --benchmark, --fewshot, --num-fewshot, --head")
    if args.log_samples and not args.output:
        raise ConfigError("--log-samples writes into the report: give --output")
    suite = load_suite(args.suite, finetune_all=args.suite_finetune)
    workdir = _workdir(args, suite)
    load = args.load
    cfg = checkpoint_eval_config(read_run_config(load), f"{load}/{RUN_CONFIG}", args.overrides)
    env = start(cfg, global_batch_from_world)
    groups = _body_groups(suite, cfg, env, args)
    heads = [_head_job(e, args, env, workdir) for e in suite.by_runner("head")]
    if env.rank == 0:
        log.info("suite %s: %d entries (%s)", suite.path, len(suite.entries),
                 ", ".join(f"{e.name} [{e.runner} {e.task}]" for e in suite.entries))  # fmt: skip
    scored: dict[str, Scored] = {}
    with parallel_session(cfg, env) as ctx:
        for job in heads:
            if job.train_cfg is not None:
                _finetune(job, env)
        for group in groups:
            scored |= _score_body(group, group.cfg, env, args)
        for job in heads:
            scored[job.entry.name] = _score_head(job, env, args)
        if cfg.parallel.pipeline_model_parallel_size > 1:
            for group in groups:
                scored |= _score_body(group, _whole_model_layout(group.cfg, env), env, args, ("generation",))
        layout = ctx.describe()
    # On every rank (the same numbers everywhere): a main metric that its task did not report fails on all of them.
    report = suite_report(suite, scored, checkpoint_meta(checkpoint_path(load)), layout, args.log_samples)
    if env.rank == 0:
        print(format_suite_table(report), flush=True)
        if args.output:
            write_report(args.output, report)
            log.info("report written to %s", args.output)
    return 0


def _workdir(args, suite: Suite) -> Path | None:
    if not any(e.needs_finetune(args.suite_finetune) for e in suite.entries):
        return None
    if args.suite_workdir:
        return Path(args.suite_workdir)
    if not args.output:
        raise ConfigError(f"{suite.path}: head entries are fine-tuned here: give --suite-workdir (or --output)")
    return Path(args.output + ".finetuned")


# ---- inputs, read and checked before any process group ------------------------------------------------------


def _body_groups(suite: Suite, cfg: ExperimentConfig, env, args) -> list[BodyGroup]:
    """The body entries grouped by the checkpoint they score (``--load`` first), each group's config (the
    checkpoint's model, this run's layout) and inputs."""
    by_load: dict[str, list[SuiteEntry]] = {str(args.load): []}
    for e in suite.entries:
        if e.runner in BODY_RUNNERS:
            by_load.setdefault(str(e.load) if e.load is not None else str(args.load), []).append(e)
    groups = []
    for load, entries in by_load.items():
        if not entries:
            continue
        if load == str(args.load):
            gcfg = cfg
        else:
            gcfg = checkpoint_eval_config(read_run_config(load), f"{load}/{RUN_CONFIG}", args.overrides)
            global_batch_from_world(gcfg, env)
            validate_layout(gcfg, env.world_size)
        tok = load_run_tokenizer(gcfg)
        groups.append(BodyGroup(load, gcfg, tok, entries, {e.name: _body_inputs(e, args, tok) for e in entries}))
    return groups


def _body_inputs(entry: SuiteEntry, args, tok):
    path = entry.scored_file
    if entry.runner == "benchmark":
        return prepare_questions(entry.task, path, entry.files.get("fewshot"), entry.num_fewshot, args.fewshot_seed,
                                 cop_base=entry.medmcqa_cop_base, skip_bad=args.skip_bad,
                                 limit=args.limit)  # fmt: skip
    if entry.runner == "perplexity":
        return load_documents(str(path), json_key=entry.task, limit=args.limit, vocab_size=tok.vocab_size)
    task = GENERATION_TASKS.get(entry.task)
    return task, load_requests(task, path, tok, skip_bad=args.skip_bad, limit=args.limit)


def _head_job(entry: SuiteEntry, args, env, workdir: Path | None) -> HeadJob:
    """The head entry's scoring config and task; for a fine-tune, also its training config (as tools/finetune.py
    builds it from the same flags) and task. The scoring config of a fine-tune is made from its training config
    (what its checkpoint will record)."""
    train_cfg = train_task = tokens = None
    if entry.needs_finetune(args.suite_finetune):
        save = workdir / entry.name
        train_cfg = finetune_config(finetune_arg_parser().parse_args(_finetune_argv(entry, args, save)))
        validate_layout(train_cfg, env.world_size)
        tokens = token_info(train_cfg)
        train_task = build_task(train_cfg, tokens)
        recorded, source, load = train_cfg.to_dict(), f"{entry.where} (fine-tune)", save
    else:
        recorded, source, load = read_run_config(entry.load), f"{entry.load}/{RUN_CONFIG}", entry.load
    try:
        cfg = checkpoint_eval_config(recorded, source, args.overrides, entry.task, str(entry.scored_file),
                                     entry.format)  # fmt: skip
    except ConfigError as e:
        raise SuiteError(f"{entry.where}: {e}") from e
    global_batch_from_world(cfg, env)
    validate_layout(cfg, env.world_size)
    return HeadJob(entry, cfg, build_task(cfg, None), load, train_cfg, train_task, tokens)


def _finetune_argv(entry: SuiteEntry, args, save: Path) -> list[str]:
    """tools/finetune.py's flags for the entry: its task, train file and format, from --load, saved to ``save``;
    the suite's layout (``--set parallel.*``) and the entry's ``finetune.set`` / ``finetune.preset``."""
    argv = ["--task", entry.task, "--init-from", str(args.load), "--train-file", str(entry.files["train"]),
            "--format", entry.format, "--save", str(save)]  # fmt: skip
    ft = entry.finetune
    if ft is not None and ft.preset:
        argv += ["--preset", ft.preset]
    sets = [o for o in args.overrides if o.startswith("parallel.")] + (ft.set if ft is not None else [])
    for s in sets:
        argv += ["--set", s]
    return argv


# ---- running -------------------------------------------------------------------------------------------------


def _finetune(job: HeadJob, env) -> None:
    """tools/finetune.py's training (training/pretrain.py ``train``) in this process group: megatron-core's groups
    and seeds started afresh for the fine-tune's config, as a tools/finetune.py process starts them."""
    ctx = initialize_parallel(job.train_cfg, env)
    if env.rank == 0:
        log.info("suite entry %s: fine-tuning %s from %s into %s", job.entry.name, job.entry.task,
                 job.train_cfg.checkpoint.init_from, job.load)  # fmt: skip
    if train(job.train_cfg, ctx, env, job.tokens, job.train_task) != 0:
        raise SuiteError(f"{job.entry.where}: fine-tuning stopped (see the log above); nothing to score")


def _whole_model_layout(cfg: ExperimentConfig, env) -> ExperimentConfig:
    """``cfg`` at pipeline size 1 (same TP, the other ranks data-parallel): generation needs the whole model."""
    out = copy.deepcopy(cfg)
    out.parallel.pipeline_model_parallel_size = 1
    out.parallel.virtual_pipeline_model_parallel_size = None
    out.train.global_batch_size = 0
    global_batch_from_world(out, env)
    return out


def _load_trainer(cfg: ExperimentConfig, env, load, head_task, weights: str, what: str) -> Trainer:
    ctx = initialize_parallel(cfg, env)  # megatron-core's groups afresh for this model's layout
    trainer = Trainer(cfg, ctx, None, EvaluationTask(cfg, head_task), forward_only=True)
    path = checkpoint_path(load)
    load_checkpoint(path, trainer.model, weights_only=True, weights_from=weights)
    if env.rank == 0:
        log.info("%s: %s, weights %s (layout %s)", what, path, weights, ctx.describe())
    return trainer


def _score_body(group: BodyGroup, cfg: ExperimentConfig, env, args, runners=None) -> dict[str, Scored]:
    """The group's entries of ``runners`` (default: all that ``cfg``'s layout can run) on one load of its
    checkpoint."""
    pp = cfg.parallel.pipeline_model_parallel_size
    runners = runners or tuple(r for r in BODY_RUNNERS if not (r == "generation" and pp > 1))
    entries = [e for e in group.entries if e.runner in runners]
    if not entries:
        return {}
    trainer = _load_trainer(cfg, env, group.load, None, args.weights, f"suite body ({', '.join(runners)})")
    show = env.rank == 0 and not args.no_progress
    tok = group.tok
    out = {}
    for e in entries:
        start_time = time.perf_counter()
        got = Scored(checkpoint=str(checkpoint_path(group.load)))
        data = group.inputs[e.name]
        if e.runner == "perplexity":
            got.rows = score_corpus(trainer, e.name, data, tok, args.stride, show, got.samples)
        elif e.runner == "benchmark":
            got.rows = score_benchmark(trainer, e.name, data, tok, show, got.samples)
        else:
            task, requests = data
            got.rows = score_generation(trainer, e.name, task, requests, tok, generation_sampling(args, task), show,
                                        got.samples)  # fmt: skip
        got.seconds = time.perf_counter() - start_time
        out[e.name] = got
    return out


def _score_head(job: HeadJob, env, args) -> Scored:
    trainer = _load_trainer(job.cfg, env, job.load, job.task, args.weights, f"suite entry {job.entry.name}")
    items = job.task.train_items[: args.limit] if args.limit else job.task.train_items
    got = Scored(checkpoint=str(checkpoint_path(job.load)))
    start_time = time.perf_counter()
    got.rows = score_head(trainer, job.task, items, job.entry.name, env.rank == 0 and not args.no_progress,
                          got.samples)  # fmt: skip
    got.seconds = time.perf_counter() - start_time
    return got


# ---- the report ----------------------------------------------------------------------------------------------


def suite_report(suite: Suite, scored: dict[str, Scored], meta: dict, layout: str, samples: bool = False) -> dict:
    """The JSON report: one row per entry (suite order) with all its metrics and its main one, the per-type
    averages and the overall score (eval/suite.py ``summarize``)."""
    entries, mains = [], []
    for e in suite.entries:
        got = scored[e.name]
        rows = [{"metric": r.metric, "value": r.value, "n": r.n, "stderr": r.stderr} for r in got.rows]
        main = main_metric(e, rows)
        mains.append((e.name, e.type, main["value"]))
        row = {"name": e.name, "type": e.type, "runner": e.runner, "task": e.task, "file": str(e.scored_file),
               "checkpoint": got.checkpoint, "metric": main["metric"], "value": main["value"], "n": main["n"],
               "stderr": main["stderr"], "metrics": rows}  # fmt: skip
        if samples:
            row["samples"] = got.samples
        entries.append(row)
    summary = summarize(mains)
    # Wall times apart from the scores: they differ from run to run, the scores do not.
    timing = {e.name: scored[e.name].seconds for e in suite.entries}
    return {"suite": str(suite.path), "name": suite.name, **meta, "layout": layout, "entries": entries, **summary,
            "scoring_seconds": timing}  # fmt: skip


def format_suite_table(report: dict) -> str:
    """Entries (main metric first, then the others), then the per-type averages and the overall score."""
    head = f"{'entry':<24} {'type':<18} {'metric':<14} {'value':>10} {'stderr':>8} {'n':>7}"
    lines = [f"suite {report['name']} ({report['suite']})", head, "-" * len(head)]
    for e in report["entries"]:
        ordered = [m for m in e["metrics"] if m["metric"] == e["metric"]] + [
            m for m in e["metrics"] if m["metric"] != e["metric"]
        ]
        for i, m in enumerate(ordered):
            se = m["stderr"]
            se = "" if se is None or se != se else f"{se:.4f}"
            name, kind = (e["name"], e["type"]) if i == 0 else ("", "")
            mark = "*" if i == 0 else " "
            lines.append(f"{name:<24} {kind:<18} {m['metric'] + mark:<14} {m['value']:>10.4f} {se:>8} {m['n']:>7}")
    lines.append("-" * len(head))
    for kind, t in report["types"].items():
        note = " (not in overall)" if kind in NOT_IN_OVERALL else ""
        lines.append(f"{'average ' + kind:<43} {'':<14} {t['average']:>10.4f}   over {len(t['entries'])}{note}")
    lines.append(f"{'overall (mean of type averages)':<43} {'':<14} {report['overall']:>10.4f}")
    lines.append("* main metric")
    return "\n".join(lines)
