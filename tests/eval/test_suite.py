"""The evaluation suite (eval/suite.py, eval/suite_run.py): the loader refuses bad suites by file, entry and field
before any model is built; the per-type averages are BLURB's; one suite run gives the numbers of the single-task
tools/evaluate.py runs (and its in-run fine-tune the weights of tools/finetune.py), and the same report at TP1 and
at TP2 x PP2 (generation entries on a PP1 second load there)."""

from __future__ import annotations

import json
import math

import pytest
import yaml
from launch import ROOT, run_tool
from toydata import FT_BASE, write_jsonl

from megatron_biomed.config.experiment import ConfigError
from megatron_biomed.eval.cli import build_arg_parser, evaluate
from megatron_biomed.eval.suite import SuiteEntry, SuiteError, load_suite, main_metric, summarize
from megatron_biomed.finetune.cli import main as finetune_main
from megatron_biomed.training.tasks import TASKS

EVALUATE = ROOT / "tools" / "evaluate.py"
LIMIT = 13  # items per entry: at DP2 (the PP1 generation pass of 4 ranks at TP2) the last pass is uneven
FINETUNE_SETS = [*FT_BASE, "train.train_iters=3"]


# ---- the loader ------------------------------------------------------------------------------------------------


def _write(tmp_path, entries, top=None):
    for name in ("q.json", "train.jsonl", "dev.jsonl", "notes.csv"):
        (tmp_path / "data").mkdir(exist_ok=True)
        (tmp_path / "data" / name).write_text("{}\n")
    path = tmp_path / "suites" / "s.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(top if top is not None else {"entries": entries}))
    return path


PQA = {"name": "pqa", "benchmark": "pubmedqa", "files": {"test": "../data/q.json"}}
HEAD = {"name": "rel", "head": "classify", "format": "pubmedqa", "files": {"train": "../data/train.jsonl",
        "dev": "../data/dev.jsonl"}, "split": "dev"}  # fmt: skip


def test_a_good_suite_resolves_paths_against_its_file_and_fills_defaults(tmp_path):
    gen = {"name": "g", "generation": "mimic_completion", "files": {"test": "../data/notes.csv"}, "metric": "rougeL"}
    ppl = {"name": "p", "perplexity": True, "files": {"test": "../data/train.jsonl"}}
    suite = load_suite(_write(tmp_path, [PQA, HEAD, gen, ppl]))
    pqa, rel, g, p = suite.entries
    assert (pqa.runner, pqa.task, pqa.type, pqa.split) == ("benchmark", "pubmedqa", "qa", "test")
    assert pqa.scored_file == tmp_path / "suites" / "../data/q.json" and pqa.scored_file.is_file()
    assert (rel.runner, rel.type, rel.scored_file.name, rel.load) == ("head", "qa", "dev.jsonl", None)
    assert rel.needs_finetune(False) and not pqa.needs_finetune(True)  # no load: fine-tuned
    assert (g.type, g.metric, p.task, p.type) == ("generation", "rougeL", "text", "perplexity")
    assert suite.name == "s"


@pytest.mark.parametrize(
    "entry, field, words",
    [
        ({**PQA, "benchmark": "pubmedqa2"}, "benchmark", ["unknown benchmark 'pubmedqa2'", "medqa", "mmlu_anatomy"]),
        ({**PQA, "benchmark": None, "generation": "meqsum9"}, "generation", ["unknown generation task", "mimic_"]),
        ({**HEAD, "head": "sft"}, "head", ["unknown head task 'sft'", "mc, classify"]),
        ({**PQA, "type": "ranking"}, "type", ["'ranking' is not a task type", "doc_classification"]),
        ({**PQA, "files": {"test": "../data/missing.json"}}, "files", ["missing.json does not exist"]),
        ({**PQA, "files": {"valid": "../data/q.json"}}, "files", ["unknown split 'valid'", "train, dev, test"]),
        ({**PQA, "files": {"dev": "../data/q.json"}}, "files", ["no 'test' file"]),
        ({**HEAD, "format": "conll9"}, "format", ["unknown format 'conll9'", "medqa"]),
        ({**PQA, "format": "bioasq"}, "format", ["reads 'pubmedqa', not 'bioasq'"]),
        ({**PQA, "metric": "f1"}, "metric", ["'f1' is not reported by pubmedqa", "acc, acc_norm"]),
        ({**PQA, "num_fewshot": 3}, "files", ["needs a 'fewshot' file"]),
        ({**PQA, "num_fewshot": -1}, "num_fewshot", ["a count >= 0"]),
        ({**PQA, "benchmark": "medmcqa"}, "medmcqa_cop_base", ["0 or 1"]),
        ({**PQA, "load": "../nowhere"}, "load", ["is not a checkpoint directory"]),
        ({**HEAD, "load": "../nowhere"}, "load", ["is not a checkpoint directory"]),
        ({**HEAD, "files": {"test": "../data/dev.jsonl"}, "split": "test"}, "files", ["needs a 'train' file"]),
        ({**HEAD, "finetune": {"set": ["train.train_iters"]}}, "finetune", ["SECTION.FIELD=VALUE"]),
        ({**HEAD, "finetune": {"steps": 3}}, "finetune", ["unknown field(s) ['steps']"]),
    ],
)
def test_a_bad_field_is_named_with_its_file_and_entry(tmp_path, entry, field, words):
    entry = {k: v for k, v in entry.items() if v is not None}
    path = _write(tmp_path, [PQA | {"name": "first"}, entry])
    with pytest.raises(SuiteError) as e:
        load_suite(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: entry {entry['name']!r}: field {field!r}: "), msg
    for w in words:
        assert w in msg, msg


def test_suite_level_errors_name_the_file(tmp_path):
    cases = [
        ({"entries": []}, "'entries' must be a non-empty list"),
        ({"entries": [PQA], "tasks": 1}, "unknown field(s) ['tasks']; known: name, entries"),
        ({"entries": [{"benchmark": "pubmedqa"}]}, "entry 1: field 'name' is missing"),
        ({"entries": [{**PQA, "weights": "ema"}]}, "entry 'pqa': unknown field(s) ['weights']; known: name, benchmark"),
        (
            {"entries": [{"name": "x", "files": {"test": "../data/q.json"}}]},
            "entry 'x': give exactly one of benchmark, generation, head, perplexity",
        ),  # fmt: skip
        ({"entries": [{**PQA, "generation": "mimic_completion"}]}, "got ['benchmark', 'generation']"),
        ({"entries": [PQA, PQA]}, "entry 'pqa': field 'name': 'pqa' is used by an earlier entry"),
    ]
    for top, words in cases:
        path = _write(tmp_path, None, top)
        with pytest.raises(SuiteError) as e:
            load_suite(path)
        assert str(e.value).startswith(f"{path}: ") and words in str(e.value), (top, str(e.value))
    path.write_text("entries: [\n")
    with pytest.raises(SuiteError, match="not valid YAML"):
        load_suite(path)
    # --suite-finetune: a head entry that loads its checkpoint must still have a train file to be fine-tuned.
    (tmp_path / "ck").mkdir()
    path = _write(tmp_path, [{**HEAD, "files": {"test": "../data/dev.jsonl"}, "split": "test", "load": "../ck"}])
    assert load_suite(path).entries[0].load == path.parent / "../ck"
    with pytest.raises(SuiteError, match="entry 'rel': field 'files': fine-tuning needs a 'train' file"):
        load_suite(path, finetune_all=True)
    # The command line: a suite names its own tasks; the suite flags need a suite.
    for argv, words in (
        (["--suite", str(path), "--benchmark", f"pubmedqa={path}"], "--suite names its own tasks"),
        (["--suite-finetune"], "--suite-finetune / --suite-workdir go with --suite"),
    ):
        with pytest.raises(ConfigError, match=words):
            evaluate(build_arg_parser().parse_args(["--load", str(tmp_path / "ck"), *argv]))


# ---- the averages ----------------------------------------------------------------------------------------------


def test_per_type_macro_average_then_mean_of_types():
    """BLURB: the mean within each type, then the mean of the types (not of the entries); perplexity reported,
    left out of the overall score."""
    mains = [("bc5chem", "ner", 0.9), ("ncbi", "ner", 0.8), ("bc2gm", "ner", 0.1), ("chemprot", "relation", 0.7),
             ("pqa", "qa", 0.5), ("bioasq", "qa", 0.8), ("pubmed", "perplexity", 30.0)]  # fmt: skip
    s = summarize(mains)
    assert list(s["types"]) == ["ner", "relation", "qa", "perplexity"]  # TASK_TYPES order
    assert s["types"]["ner"] == {"average": pytest.approx(0.6), "entries": ["bc5chem", "ncbi", "bc2gm"]}
    assert s["types"]["qa"]["average"] == pytest.approx(0.65) and s["types"]["perplexity"]["average"] == 30.0
    assert s["overall"] == pytest.approx((0.6 + 0.7 + 0.65) / 3)  # the mean over entries would be 0.6333
    assert s["overall_over"] == ["ner", "relation", "qa"]
    assert math.isnan(summarize([("p", "perplexity", 3.0)])["overall"])
    entry = SuiteEntry("pqa", "benchmark", "pubmedqa", "qa", {}, where="s.yaml: entry 'pqa'")
    rows = [{"metric": "acc", "value": 0.5}, {"metric": "acc_norm", "value": 0.6}]
    assert main_metric(entry, rows)["metric"] == "acc"
    entry.metric = "acc_norm"
    assert main_metric(entry, rows)["value"] == 0.6
    entry.metric = "f1"
    with pytest.raises(SuiteError, match=r"s.yaml: entry 'pqa': field 'metric': 'f1' is not among .*acc, acc_norm"):
        main_metric(entry, rows)


# ---- one run against the single-task runs, and across layouts ---------------------------------------------------


# Head entries beside the multiple-choice one: one per other head task type (fine-tuned in the TP1 run, loaded by
# the TP2 x PP2 run), so that every head the suite scores is compared across layouts.
OTHER_HEADS = {
    "ner_head": ("ner", "conll", "ner"),
    "biosses_head": ("similarity", "biosses", "biosses"),
    "hoc_head": ("multilabel", "hoc", "hoc"),
}
FIRST_ENTRIES = ("pubmedqa", "medqa_head", "pubmedqa_gen", "toy_text", "toy_text_own_load")


def _suite_file(path, toy, corpus, head) -> str:
    """The toy suite; ``head(name)``: the head entry's checkpoint fields (``finetune:`` or ``load:``)."""
    entries = [
        {"name": "pubmedqa", "benchmark": "pubmedqa", "files": {"test": str(toy["pubmedqa"])}},
        {"name": "medqa_head", "head": "mc", "format": "medqa",
         "files": {"train": str(toy["mc_train"]), "test": str(toy["mc_valid"])}, **head("medqa_head")},
        {"name": "pubmedqa_gen", "generation": "pubmedqa_generative", "files": {"test": str(toy["pubmedqa"])}},
        {"name": "toy_text", "perplexity": "text", "files": {"test": str(corpus)}},
        # A checkpoint of its own (here the same one, named by its iteration directory): a second body load.
        {"name": "toy_text_own_load", "perplexity": "text", "files": {"test": str(corpus)},
         "load": str(toy["pretrained"] / "iter_0000000")},
    ]  # fmt: skip
    for name, (task, fmt, data) in OTHER_HEADS.items():
        files = {"train": str(toy[data]), "test": str(toy[data])}
        entries.append({"name": name, "head": task, "format": fmt, "files": files, **head(name)})
    path.write_text(yaml.safe_dump({"name": "toy", "entries": entries}))
    return str(path)


def _evaluate(argv: list[str]) -> dict:
    out = argv[argv.index("--output") + 1]
    assert evaluate(build_arg_parser().parse_args(argv)) == 0
    return json.loads(open(out).read())


@pytest.fixture(scope="module")
def suite_run(toy, tmp_path_factory):
    """The toy suite at TP1 in this process, its head entry fine-tuned in the run (3 steps from the pretrained
    checkpoint) and saved under the work dir."""
    work = tmp_path_factory.mktemp("suite")
    corpus = write_jsonl(work / "corpus.jsonl", [{"text": "the red cat saw the blue dog. " * (3 + 2 * i)}
                                                 for i in range(6)])  # fmt: skip
    suite = _suite_file(work / "toy.yaml", toy, corpus, lambda name: {"finetune": {"set": FINETUNE_SETS}})
    common = ["--limit", str(LIMIT), "--stride", "40", "--no-progress", "--log-samples"]
    report = _evaluate(["--suite", suite, "--load", str(toy["pretrained"]), "--suite-workdir", str(work / "ft"),
                        *common, "--output", str(work / "tp1.json")])  # fmt: skip
    return {"work": work, "corpus": corpus, "common": common, "report": report, "finetuned": work / "ft"}


def test_suite_gives_the_numbers_of_the_single_task_runs(toy, suite_run, tmp_path):
    """Benchmark, generation and perplexity entries as one tools/evaluate.py run of the body; the head entry,
    fine-tuned in the suite, as tools/finetune.py + tools/evaluate.py --head: every metric and every item's
    score equal (the same code on the same micro-batches: exactly)."""
    report, common = suite_run["report"], suite_run["common"]
    every = {e["name"]: e for e in report["entries"]}
    entries = {name: every[name] for name in FIRST_ENTRIES}
    body = _evaluate(["--load", str(toy["pretrained"]), "--benchmark", f"pubmedqa={toy['pubmedqa']}", "--benchmark",
                      f"pubmedqa_generative={toy['pubmedqa']}", "--corpus", f"toy_text={suite_run['corpus']}",
                      *common, "--output", str(tmp_path / "body.json")])  # fmt: skip
    ft = tmp_path / "ft_tool"
    argv = ["--task", "mc", "--init-from", str(toy["pretrained"]), "--train-file", str(toy["mc_train"]),
            "--format", "medqa", "--save", str(ft)] + [a for s in FINETUNE_SETS for a in ("--set", s)]  # fmt: skip
    assert finetune_main(argv) == 0
    head = _evaluate(["--load", str(ft), "--head", "mc", "--test-file", str(toy["mc_valid"]), *common,
                      "--output", str(tmp_path / "head.json")])  # fmt: skip
    single = {("pubmedqa_gen" if r["task"] == "pubmedqa_generative" else r["task"], r["metric"]): r
              for r in body["results"]}  # fmt: skip
    single |= {("medqa_head", r["metric"]): r for r in head["results"]}
    suite = {(name, m["metric"]): m for name, e in entries.items() for m in e["metrics"]}
    assert entries["toy_text_own_load"]["metrics"] == entries["toy_text"]["metrics"]
    assert entries["toy_text_own_load"]["checkpoint"].endswith("pretrained/iter_0000000")
    suite = {k: v for k, v in suite.items() if k[0] != "toy_text_own_load"}
    assert sorted(suite) == sorted(single) and len(suite) == 8
    for key, m in suite.items():
        assert (m["value"], m["n"]) == (single[key]["value"], single[key]["n"]), key
        assert m["stderr"] == single[key]["stderr"] or math.isnan(m["stderr"]), key
    samples = body["samples"] | {"medqa_head": head["samples"]["medqa:mc"]}
    samples["pubmedqa_gen"] = samples.pop("pubmedqa_generative")
    samples["toy_text_own_load"] = samples["toy_text"]
    for name, e in entries.items():
        assert e["samples"] == samples[name], name
    assert len(entries["medqa_head"]["samples"]) == LIMIT and entries["medqa_head"]["samples"][0]["scores"]
    assert entries["medqa_head"]["checkpoint"].endswith("medqa_head/iter_0000003")
    # The report's averages are its entries' main metrics averaged per type, then over the types.
    qa = [entries["pubmedqa"]["value"], entries["medqa_head"]["value"]]
    assert entries["pubmedqa"]["metric"] == "acc" and entries["toy_text"]["metric"] == "perplexity"
    assert report["types"]["qa"]["average"] == sum(qa) / 2
    # Each other head type is its one entry, scored by its own task's main metric.
    for name, kind, metric in (("ner_head", "ner", "entity_f1"), ("biosses_head", "similarity", "pearson"),
                               ("hoc_head", "doc_classification", "micro_f1")):  # fmt: skip
        assert (every[name]["type"], every[name]["metric"]) == (kind, metric), name
        assert report["types"][kind] == {"average": every[name]["value"], "entries": [name]}
        assert every[name]["checkpoint"].endswith(f"{name}/iter_0000003")
    kinds = [report["types"][k]["average"] for k in ("qa", "generation", "ner", "similarity", "doc_classification")]
    assert report["overall"] == pytest.approx(sum(kinds) / len(kinds), rel=1e-12)


def test_same_report_at_tp1_and_tp2_pp2(toy, suite_run):
    """The suite on 4 gloo ranks at TP2 x PP2, its head entries (multiple choice, NER, similarity, multi-label)
    loading the checkpoints the TP1 run fine-tuned:
    every metric and item score as at TP1 (to float32 rounding of the TP reductions; measured worst relative
    difference 2.4e-7), the same generations and picks. Generation needs the whole model on a rank, so the
    generation entry runs on a second load at TP2 x PP1 x DP2 (the log says so)."""
    work, tp1 = suite_run["work"], suite_run["report"]
    suite = _suite_file(work / "toy_load.yaml", toy, suite_run["corpus"],
                        lambda name: {"load": str(suite_run["finetuned"] / name)})  # fmt: skip
    out = work / "tp2pp2.json"
    layout = ["--set", "parallel.tensor_model_parallel_size=2", "--set", "parallel.pipeline_model_parallel_size=2"]
    proc = run_tool(EVALUATE, 4, ["--suite", suite, "--load", str(toy["pretrained"]), *suite_run["common"], *layout,
                                  "--output", str(out)], work)  # fmt: skip
    tp2 = json.loads(out.read_text())
    assert "tensor_model_parallel_size 2, pipeline_model_parallel_size 2" in tp2["layout"]
    assert "pipeline_model_parallel_size 1, virtual_pipeline_model_parallel_size None, data_parallel_size 2" in (
        proc.stdout
    )
    worst = _compare(tp1["entries"], tp2["entries"], "entries")
    _compare(tp1["types"], tp2["types"], "types")
    assert abs(tp1["overall"] - tp2["overall"]) <= 1e-6
    print(f"TP1 vs TP2 x PP2: worst relative difference {worst:.1e}")


def _compare(x, y, where: str) -> float:
    """Equal structure, strings and ints; floats within 1e-5 relative (TP's float32 reductions); the worst."""
    if isinstance(x, dict):
        assert x.keys() == y.keys(), where
        return max([_compare(x[k], y[k], f"{where}.{k}") for k in x], default=0.0)
    if isinstance(x, list):
        assert len(x) == len(y), where
        return max([_compare(u, v, f"{where}[{i}]") for i, (u, v) in enumerate(zip(x, y))], default=0.0)
    if isinstance(x, float) and not (isinstance(y, float) and math.isnan(x) and math.isnan(y)):
        d = abs(x - y) / max(1.0, abs(y))
        assert d <= 1e-5, (where, x, y)
        return d
    assert x == y or (isinstance(x, float) and math.isnan(x)), (where, x, y)
    return 0.0


# ---- the example suites ------------------------------------------------------------------------------------------

EXAMPLES = ROOT / "examples" / "eval"


def test_example_suites_load():
    """examples/eval/suite_today.yaml and biollm_suite.yaml load as they are (every name they use is registered);
    each head entry's fine-tune records the type the report averages it under and reports its main metric."""
    if not (ROOT.parent / "shared" / "data" / "bio_ner").is_dir():
        pytest.skip("../shared/data (the public dev files the example suites name) is not here")
    today = load_suite(EXAMPLES / "suite_today.yaml")
    assert {e.runner for e in today.entries} == {"benchmark", "generation", "perplexity"}
    full = load_suite(EXAMPLES / "biollm_suite.yaml")
    types = {e.type for e in full.entries}
    assert types == {"ner", "relation", "similarity", "qa", "generation", "perplexity"}, types
    for e in full.by_runner("head"):
        sets = dict(s.split("=", 1) for s in e.finetune.set)
        assert sets.get("task.task_type", TASKS.get(e.task).task_type) == e.type, e.name
        # classify reports micro_f1 only with negative labels or when asked (ClassificationTask.score): an entry
        # scored by it must ask, or the suite fails after the fine-tune ("not among what classify reported")
        if e.task == "classify" and e.metric in ("micro_f1", "precision", "recall"):
            assert "task.negative_labels" in sets or sets.get("task.main_metric") == e.metric, e.name
    heads = [e for e in full.entries if e.runner == "head"]
    assert heads and all(e.split == "dev" and e.needs_finetune(False) and "train" in e.files for e in heads)
    for e in full.entries:  # never an official test split (withheld)
        assert all("test" not in p.name.lower() for p in e.files.values()), e.name
