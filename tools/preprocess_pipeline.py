#!/usr/bin/env python
"""Raw corpus -> cleaned, deduplicated, tokenized .bin/.idx as Slurm job arrays (or processes on this machine).

    python tools/preprocess_pipeline.py --input data/pubmed --work-dir work/pubmed --output-prefix data/pubmed \\
        --tokenizer data/tokenizer --append-eod --near-dup --tasks 64 \\
        --executor slurm --partition cpu --account bio --array-throttle 16 --time 4:00:00 --mem 16G

One pipeline (megatron_biomed/data/jobs/stages.py): convert -> decide -> [signatures -> buckets -> near] ->
tokenize -> merge -> [index_cache]. The result is byte-identical to tools/pubmed_to_jsonl.py then
tools/preprocess_data.py --workers 1 on the same input, whatever --tasks. Rerun the same command after a failure:
only the tasks without a valid completion marker run again. Every filter flag of tools/pubmed_to_jsonl.py
(--min-words, --near-dup, --languages, ...) and its --format / --skip-bad are accepted as they are.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

if importlib.util.find_spec("megatron_biomed") is None:  # a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pubmed_to_jsonl  # noqa: E402  (the cleaning flags, taken from the single-node tool itself)

from megatron_biomed.data.cleaning.pipeline import expand_inputs  # noqa: E402
from megatron_biomed.data.jobs import IndexCacheSpec, PipelineSpec, StageNotReady, plan, save_spec  # noqa: E402
from megatron_biomed.data.jobs.local import run_local  # noqa: E402
from megatron_biomed.data.jobs.slurm import SlurmError, SlurmOptions, submit, wait  # noqa: E402
from megatron_biomed.data.jobs.spec import DEFAULT_TARGET_FILE_SIZE, GB  # noqa: E402
from megatron_biomed.data.readers import BadInputError  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("pipeline")
    g.add_argument("--input", action="append", required=True, help="file, glob or directory; repeat for more")
    g.add_argument("--work-dir", required=True, type=Path, help="stage outputs, markers, sbatch scripts, logs")
    g.add_argument("--output-prefix", required=True, help="as tools/preprocess_data.py: <prefix>_text_document")
    g.add_argument("--tasks", type=int, default=1, help="array tasks per parallel stage (input files are split "
                   "among them by bytes, in file order)")
    g.add_argument("--status", action="store_true", help="print what is complete and what would run, then exit")
    g = p.add_argument_group("tokenize (as tools/preprocess_data.py)")
    g.add_argument("--tokenizer", required=True)
    g.add_argument("--json-keys", nargs="+", default=["text"])
    g.add_argument("--append-eod", action="store_true")
    g.add_argument("--tokenizer-backend", default="auto", choices=["auto", "gigatoken", "hf"])
    g = p.add_argument_group("merge")
    g.add_argument("--target-file-size", type=float, default=DEFAULT_TARGET_FILE_SIZE / GB,
                   help="GB per merged .bin; the task partials are the unit (default: %(default)s, as Megatron-LM "
                        "advises large files at scale)")
    g = p.add_argument_group("index cache prebuild (values of the training run; skipped without --index-cache-samples)")
    g.add_argument("--index-cache-samples", type=int, nargs=3, metavar=("TRAIN", "VALID", "TEST"))
    g.add_argument("--index-cache-seq-length", type=int, default=1024)
    g.add_argument("--index-cache-seed", type=int, default=1234)
    g.add_argument("--index-cache-split", default="969,30,1")
    g.add_argument("--index-cache-dir", default=None, help="data.cache_dir of the run (default: beside the data)")
    g.add_argument("--index-cache-blend", nargs="+", default=None, help="data.blend of the run (default: outputs)")
    g = p.add_argument_group("executor")
    g.add_argument("--executor", choices=["local", "slurm"], default="local")
    g.add_argument("--workers", type=int, default=1, help="local: tasks of one stage at once")
    g.add_argument("--partition")
    g.add_argument("--account")
    g.add_argument("--time", help="per task, e.g. 4:00:00")
    g.add_argument("--cpus-per-task", type=int, default=1)
    g.add_argument("--mem", help="per task, e.g. 16G")
    g.add_argument("--array-throttle", type=int, help="at most N tasks of a stage at once (--array=...%%N)")
    g.add_argument("--log-dir", help="default <work-dir>/logs; one file per task: <stage>/<jobid>_<task>.log")
    g.add_argument("--job-name", default="preprocess")
    g.add_argument("--python", default=sys.executable,
                   help="the Python each task runs (must exist on the compute nodes; default: this one)")
    g.add_argument("--sbatch-arg", action="append", default=[], help="passed to every sbatch; repeat for more")
    g.add_argument("--wait", action="store_true", help="slurm: wait for the jobs, then report (exit 1 if unfinished)")
    return p


def cleaning_args(rest: list[str]):
    """The filter flags (and --format, --skip-bad) parsed by tools/pubmed_to_jsonl.py's own parser."""
    ns = pubmed_to_jsonl.build_parser().parse_args(["--input", "-", "--output-dir", "-", *rest])
    return pubmed_to_jsonl.config_from_args(ns), ns.format, ns.skip_bad


def spec_from_args(args, rest: list[str]) -> PipelineSpec:
    cfg, fmt, skip_bad = cleaning_args(rest)
    cache = None
    if args.index_cache_samples:
        cache = IndexCacheSpec(samples=tuple(args.index_cache_samples), seq_length=args.index_cache_seq_length,
                               seed=args.index_cache_seed, split=args.index_cache_split,
                               cache_dir=args.index_cache_dir, blend=tuple(args.index_cache_blend or ()))
    # absolute paths: tasks may run on other nodes. The index-cache blend and cache dir stay as given: megatron-core
    # names its cache files by the prefix string, so they must be the training run's, launched from the same directory
    inputs = tuple(os.path.abspath(p) for p in expand_inputs(args.input))
    return PipelineSpec(inputs=inputs, work_dir=os.path.abspath(args.work_dir),
                        output_prefix=os.path.abspath(args.output_prefix), tokenizer=os.path.abspath(args.tokenizer),
                        tasks=args.tasks, format=fmt, skip_bad=skip_bad, cleaning=cfg,
                        json_keys=tuple(args.json_keys), append_eod=args.append_eod,
                        tokenizer_backend=args.tokenizer_backend,
                        target_file_size=max(1, int(args.target_file_size * GB)), index_cache=cache)


def main(argv: list[str] | None = None) -> int:
    args, rest = build_parser().parse_known_args(argv)
    try:
        spec = spec_from_args(args, rest)
        if args.status:
            print(plan(spec).describe())
            return 0
        save_spec(spec)
        if args.executor == "local":
            p = run_local(spec, workers=args.workers)
        else:
            opts = SlurmOptions(partition=args.partition, account=args.account, time=args.time,
                                cpus_per_task=args.cpus_per_task, mem=args.mem, array_throttle=args.array_throttle,
                                log_dir=args.log_dir, job_name=args.job_name, sbatch_args=tuple(args.sbatch_arg),
                                python=args.python)
            jobs = submit(spec, opts)
            if not jobs:
                print("nothing to do: every stage is complete")
            if not args.wait:
                return 0
            p = wait(spec, jobs)
    except BadInputError as e:
        print(f"error: {e.path}:{e.line}: {e.problem}\nrerun with --skip-bad to skip broken files", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError, StageNotReady, SlurmError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(p.describe())
    if not p.complete:
        print(f"unfinished: see the logs under {args.log_dir or spec.work / 'logs'}; rerun this command to run only "
              "the unfinished tasks", file=sys.stderr)
        return 1
    print(f"wrote {spec.output_prefix}_*  (list: {spec.work / 'outputs.json'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
