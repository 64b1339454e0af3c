"""The evaluation suite: a YAML file naming the tasks one ``tools/evaluate.py --suite FILE --load CKPT`` run scores,
its schema (:class:`SuiteEntry`), its loader (:func:`load_suite`: every field checked before any model is built)
and the report's averages (:func:`summarize`: BLURB's macro average per task type, then over the types).

    entries:
      - name: pubmedqa                 # unique; the report's row
        benchmark: pubmedqa            # what runs it: ONE of benchmark / generation / head / perplexity
        files: {test: ../data/pqal.json, fewshot: ../data/pqal_train.json}   # relative to this YAML file
        num_fewshot: 3
      - name: chemprot
        type: relation                 # default: the runner's (a head task's ``task_type``)
        head: classify                 # a training TASKS name whose class is a HeadTask
        format: chemprot               # a data READERS name
        files: {train: train.jsonl, dev: dev.jsonl}
        split: dev                     # the file scored (default test)
        metric: micro_f1               # the main metric (default: the first the task reports)
        load: ../ckpt/chemprot         # its fine-tuned checkpoint, or:
        finetune: {set: [train.train_iters=100, optimizer.lr=2e-5]}   # fine-tune from --load, then score
      - name: meqsum
        generation: meqsum             # an eval/generation.py TASKS name
        files: {test: meqsum_dev.jsonl}
        load: ../ckpt/meqsum_sft       # any entry may name its own checkpoint (default: --load)
      - name: pubmed
        perplexity: text               # the JSON field of a .jsonl corpus (a .bin/.idx prefix or text file too)
        files: {test: abstracts.jsonl}

Runners are the :data:`RUNNERS` table (one entry each: the registry its name is looked up in, the task type it
defaults to, the metrics it is known to report); the names are looked up in the project's registries
(benchmarks, generation TASKS, training TASKS, READERS), never in a list of their own.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import yaml

from megatron_biomed.data.tasks import READERS
from megatron_biomed.errors import BiomedError
from megatron_biomed.eval.benchmarks import BenchmarkError, benchmark
from megatron_biomed.eval.generation import TASKS as GENERATION_TASKS
from megatron_biomed.eval.generation import GenerationRequest
from megatron_biomed.finetune.head_tasks import HeadTask
from megatron_biomed.training.tasks import TASKS


class SuiteError(BiomedError, ValueError):
    """A suite file that cannot be run: the message names the file, the entry and the field."""


# The task types a report averages over (BLURB, arXiv 2007.15779 §3 / Table 1, groups its tasks the same way:
# NER, relation extraction, sentence similarity, document classification, question answering; "generation" and
# "perplexity" are ours, for the generative tasks the issue adds).
TASK_TYPES = ("ner", "relation", "similarity", "doc_classification", "qa", "generation", "perplexity")
# our choice: perplexity is lower-is-better and unbounded, so it is reported per type but left out of the overall
# average of type averages (BLURB's overall score averages bounded higher-is-better metrics only).
NOT_IN_OVERALL = ("perplexity",)
SPLITS = ("train", "dev", "test", "fewshot")


@dataclass(frozen=True)
class Runner:
    """How entries of one kind are run: ``check(name)`` raises with the known names if ``name`` is unknown;
    ``default_type(name)``: the entry's type when it gives none; ``metrics(name)``: the metrics it reports,
    known before running (None: only the scores say, checked after scoring)."""

    key: str
    check: Callable[[str], None]
    default_type: Callable[[str], str]
    metrics: Callable[[str], Optional[tuple[str, ...]]]


def _check_benchmark(name: str) -> None:
    try:
        benchmark(name)
    except BenchmarkError as e:
        raise SuiteError(str(e)) from e


def _check_generation(name: str) -> None:
    if name not in GENERATION_TASKS:
        raise SuiteError(f"unknown generation task {name!r}; known: {', '.join(GENERATION_TASKS.names())}")


def head_task_names() -> tuple[str, ...]:
    """The training TASKS whose class is a fine-tuned head (HeadTask), in table order."""
    return tuple(n for n in TASKS.names() if n != "pretrain" and _is_head(n))


def _is_head(name: str) -> bool:
    cls = TASKS.get(name)
    return isinstance(cls, type) and issubclass(cls, HeadTask)


def _check_head(name: str) -> None:
    if name not in TASKS or not _is_head(name):
        raise SuiteError(f"unknown head task {name!r}; known: {', '.join(head_task_names())}")


def _generation_metrics(name: str) -> tuple[str, ...] | None:
    """A generation task says its metrics only by scoring: one probe item, scored without a model. A task whose
    scorer needs more than a plain request (None) has its metric checked after scoring instead."""
    task = GENERATION_TASKS.get(name)
    try:
        return tuple(row[0] for row in task.score(["probe"], [GenerationRequest("probe", "probe")]))
    except Exception:  # noqa: BLE001 - any scorer failure on the probe only means "not known before running"
        return None


PERPLEXITY_METRICS = ("perplexity", "bits_per_byte", "nll_per_token")  # eval/runner.py corpus_perplexity's rows
RUNNERS: dict[str, Runner] = {
    "benchmark": Runner("benchmark", _check_benchmark, lambda n: "qa", lambda n: ("acc", "acc_norm")),
    "generation": Runner("generation", _check_generation, lambda n: "generation", _generation_metrics),
    "head": Runner("head", _check_head, lambda n: TASKS.get(n).task_type, lambda n: None),
    "perplexity": Runner("perplexity", lambda n: None, lambda n: "perplexity", lambda n: PERPLEXITY_METRICS),
}


@dataclass
class Finetune:
    """Fine-tune-then-score settings of a head entry: ``preset`` for the hyperparameters (the model is the
    checkpoint's) and ``set``, ``--set``-style overrides (train.*, optimizer.*, task.*)."""

    preset: Optional[str] = None
    set: list[str] = field(default_factory=list)


@dataclass
class SuiteEntry:
    """One task of the suite. ``runner``: "benchmark", "generation", "head" or "perplexity"; ``task``: its name
    in the runner's registry (for perplexity: the JSON field of a .jsonl corpus); ``files``: split -> path,
    resolved against the YAML file's folder; ``split``: the file scored; ``load``: the checkpoint it scores
    (a head's fine-tune, an SFT model for a generation task; None: the run's ``--load``)."""

    name: str
    runner: str
    task: str
    type: str
    files: dict[str, Path]
    split: str = "test"
    format: Optional[str] = None
    metric: Optional[str] = None
    num_fewshot: int = 0
    medmcqa_cop_base: Optional[int] = None
    load: Optional[Path] = None
    finetune: Optional[Finetune] = None
    where: str = ""  # "FILE: entry NAME", for messages

    @property
    def scored_file(self) -> Path:
        return self.files[self.split]

    def needs_finetune(self, finetune_all: bool) -> bool:
        """Head entries fine-tune from the suite's checkpoint when asked for all (``--suite-finetune``) or when
        they name no fine-tuned checkpoint."""
        return self.runner == "head" and (finetune_all or self.load is None)


@dataclass
class Suite:
    path: Path
    entries: list[SuiteEntry]
    name: str = ""

    def by_runner(self, runner: str) -> list[SuiteEntry]:
        return [e for e in self.entries if e.runner == runner]


ENTRY_FIELDS = ("name", *RUNNERS, "type", "files", "split", "format", "metric", "num_fewshot", "medmcqa_cop_base",
                "load", "finetune")  # fmt: skip
TOP_FIELDS = ("name", "entries")


def load_suite(path: str | Path, *, finetune_all: bool = False) -> Suite:
    """The suite in ``path``, every entry checked (names against their registries, files present, fields of the
    right kind). ``finetune_all``: every head entry will be fine-tuned (each needs a train file). Raises
    :class:`SuiteError` naming the file, the entry and the field."""
    path = Path(path)
    if not path.is_file():
        raise SuiteError(f"{path}: no such suite file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise SuiteError(f"{path}: not valid YAML ({e})") from e
    if not isinstance(raw, dict):
        raise SuiteError(f"{path}: expected a mapping with 'entries:' (a list of tasks)")
    unknown = sorted(set(raw) - set(TOP_FIELDS))
    if unknown:
        raise SuiteError(f"{path}: unknown field(s) {unknown}; known: {', '.join(TOP_FIELDS)}")
    rows = raw.get("entries")
    if not isinstance(rows, list) or not rows:
        raise SuiteError(f"{path}: 'entries' must be a non-empty list of tasks")
    entries, seen = [], set()
    for i, row in enumerate(rows):
        entry = _entry(path, i, row, finetune_all)
        if entry.name in seen:
            raise SuiteError(f"{entry.where}: field 'name': {entry.name!r} is used by an earlier entry")
        seen.add(entry.name)
        entries.append(entry)
    return Suite(path, entries, str(raw.get("name") or path.stem))


def _entry(path: Path, index: int, row, finetune_all: bool) -> SuiteEntry:
    where = f"{path}: entry {index + 1}"
    if not isinstance(row, dict):
        raise SuiteError(f"{where}: expected a mapping of fields, got {type(row).__name__}")
    name = row.get("name")
    if not isinstance(name, str) or not name.strip():
        raise SuiteError(f"{where}: field 'name' is missing (every entry names its row in the report)")
    where = f"{path}: entry {name!r}"

    def bad(fld: str, problem: str) -> SuiteError:
        return SuiteError(f"{where}: field {fld!r}: {problem}")

    unknown = sorted(set(row) - set(ENTRY_FIELDS))
    if unknown:
        raise SuiteError(f"{where}: unknown field(s) {unknown}; known: {', '.join(ENTRY_FIELDS)}")
    keys = [k for k in RUNNERS if k in row]
    if len(keys) != 1:
        raise SuiteError(f"{where}: give exactly one of {', '.join(RUNNERS)} (what runs it), got {keys or 'none'}")
    runner = RUNNERS[keys[0]]
    task = row[runner.key]
    if runner.key == "perplexity" and task in (True, None):
        task = "text"
    if not isinstance(task, str):
        raise bad(runner.key, f"expected a name, got {task!r}")
    try:
        runner.check(task)
    except SuiteError as e:
        raise bad(runner.key, str(e)) from e

    kind = row["type"] if "type" in row else runner.default_type(task)
    if kind not in TASK_TYPES:
        raise bad("type", f"{kind!r} is not a task type; known: {', '.join(TASK_TYPES)}")

    files = _files(row.get("files"), path, bad)
    split = row.get("split", "test")
    if split not in SPLITS or split == "fewshot":
        raise bad("split", f"{split!r}: the scored file is one of train, dev, test")
    if split not in files:
        raise bad("files", f"no {split!r} file (the split scored; set 'split' to score another)")

    fmt = row.get("format")
    if fmt is not None:
        if runner.key != "head" and runner.key != "benchmark":
            raise bad("format", f"a {runner.key} entry reads its own format; remove the field")
        if fmt not in READERS:
            raise bad("format", f"unknown format {fmt!r}; known: {', '.join(READERS)}")
        if runner.key == "benchmark" and fmt != benchmark(task).format:
            raise bad("format", f"benchmark {task} reads {benchmark(task).format!r}, not {fmt!r}")

    metric = row.get("metric")
    known = runner.metrics(task)
    if metric is not None and (not isinstance(metric, str) or (known is not None and metric not in known)):
        raise bad("metric", f"{metric!r} is not reported by {task}; it reports {', '.join(known or ())}")

    num_fewshot = row.get("num_fewshot", 0)
    if not isinstance(num_fewshot, int) or isinstance(num_fewshot, bool) or num_fewshot < 0:
        raise bad("num_fewshot", f"expected a count >= 0, got {num_fewshot!r}")
    if num_fewshot and runner.key != "benchmark":
        raise bad("num_fewshot", "few-shot exemplars are for benchmark entries")
    if num_fewshot and "fewshot" not in files:
        raise bad("files", f"num_fewshot {num_fewshot} needs a 'fewshot' file (the exemplars)")

    cop = row.get("medmcqa_cop_base")
    if cop not in (None, 0, 1):
        raise bad("medmcqa_cop_base", f"expected 0 or 1, got {cop!r}")
    if runner.key == "benchmark" and benchmark(task).format == "medmcqa" and cop is None:
        raise bad("medmcqa_cop_base", "medmcqa: give its 'cop' convention (0 or 1)")

    load = row.get("load")
    if load is not None:
        load = _resolve(path, load)
        if not load.is_dir():
            raise bad("load", f"{load} is not a checkpoint directory")
    ft = row.get("finetune")
    if ft is not None:
        if runner.key != "head":
            raise bad("finetune", "only head entries are fine-tuned")
        ft = _finetune(ft, bad)
    entry = SuiteEntry(name, runner.key, task, kind, files, split, fmt, metric, num_fewshot, cop, load, ft, where)
    if entry.needs_finetune(finetune_all):
        if "train" not in files:
            raise bad("files", "fine-tuning needs a 'train' file" + ("" if load else " (or give 'load:')"))
        if fmt is None:
            raise bad("format", "fine-tuning needs the files' format (a READERS name)")
    return entry


def _resolve(path: Path, value) -> Path:
    p = Path(str(value)).expanduser()
    return p if p.is_absolute() else path.parent / p


def _files(value, path: Path, bad) -> dict[str, Path]:
    if not isinstance(value, dict) or not value:
        raise bad("files", f"expected a mapping of split -> path ({', '.join(SPLITS)})")
    out = {}
    for split, p in value.items():
        if split not in SPLITS:
            raise bad("files", f"unknown split {split!r}; known: {', '.join(SPLITS)}")
        resolved = _resolve(path, p)
        # A .bin/.idx prefix (perplexity) names two files.
        if not (resolved.exists() or Path(str(resolved) + ".bin").is_file()):
            raise bad("files", f"{split}: {resolved} does not exist")
        out[split] = resolved
    return out


def _finetune(value, bad) -> Finetune:
    if value is True:
        return Finetune()
    if not isinstance(value, dict):
        raise bad("finetune", "expected a mapping with 'set' (a list of SECTION.FIELD=VALUE) and/or 'preset'")
    unknown = sorted(set(value) - {f.name for f in dataclasses.fields(Finetune)})
    if unknown:
        raise bad("finetune", f"unknown field(s) {unknown}; known: preset, set")
    sets = value.get("set", [])
    if not isinstance(sets, list) or not all(isinstance(s, str) and "=" in s for s in sets):
        raise bad("finetune", f"'set' must be a list of SECTION.FIELD=VALUE strings, got {sets!r}")
    return Finetune(value.get("preset"), list(sets))


# ---- the report's averages --------------------------------------------------------------------------------------


def main_metric(entry: SuiteEntry, rows: list[dict]) -> dict:
    """The entry's main metric among its result rows (``metric``, else the first its task reported)."""
    if entry.metric is None:
        return rows[0]
    for r in rows:
        if r["metric"] == entry.metric:
            return r
    raise SuiteError(f"{entry.where}: field 'metric': {entry.metric!r} is not among what {entry.task} reported "
                     f"({', '.join(r['metric'] for r in rows)})")  # fmt: skip


def summarize(mains: list[tuple[str, str, float]]) -> dict:
    """``mains``: (entry name, type, main metric value). Per type the macro average of its entries' main metrics,
    and the overall average of the type averages (types in NOT_IN_OVERALL left out): BLURB's score (arXiv
    2007.15779; microsoft.github.io/BLURB and the bigbio/blurb dataset card: "to avoid placing undue emphasis on
    tasks with many available datasets, such as NER, BLURB reports the macro average across all tasks" -- the
    average within each task type, then across the types)."""
    types: dict[str, list[tuple[str, float]]] = {}
    for name, kind, value in mains:
        types.setdefault(kind, []).append((name, value))
    per_type = {
        kind: {"average": sum(v for _, v in rows) / len(rows), "entries": [n for n, _ in rows]}
        for kind, rows in sorted(types.items(), key=lambda kv: TASK_TYPES.index(kv[0]))
    }
    averaged = [t["average"] for k, t in per_type.items() if k not in NOT_IN_OVERALL]
    overall = sum(averaged) / len(averaged) if averaged else math.nan
    return {"types": per_type, "overall": overall, "overall_over": [k for k in per_type if k not in NOT_IN_OVERALL]}
