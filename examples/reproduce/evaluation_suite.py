#!/usr/bin/env python
"""Issue 20 in miniature: the evaluation suite (BLURB-style task types, one report) run for real on the public
train/dev data, from the small PubMed GPT that claim 3 (finetune_vs_zeroshot.py) pretrains; each entry is set
beside its trivial baseline.

    python examples/reproduce/evaluation_suite.py           # full run (see README for the measured wall time)
    python examples/reproduce/evaluation_suite.py --smoke   # seconds; checks the pipeline only

From the shared files to the table, with the project's CLIs:
  1. the pretrained tiny GPT: --pretrained DIR, by default claim 3's runs/reproduce/finetune_vs_zeroshot/gpt_pretrained;
     when absent it is built here by claim 3's own step (finetune_vs_zeroshot.pretrain_gpt);
  2. small training slices cut from the shared TRAIN files by a hash of each record (common.hash_order / is_heldout);
     the shared DEV files are scored, never a test file. GAD and HoC have train files only: a hash split of the train
     file into train / held-out (20%) stands in for a dev split;
  3. MeQSum: tools/make_generative_sft.py turns meqsum_1000.jsonl into SFT rows, tools/finetune.py --task sft trains
     on a slice of them; the suite scores that checkpoint (its entry's load:) on the MEDIQA-QS 2021 validation set;
  4. one suite YAML (written to the work dir) and ONE tools/evaluate.py --suite FILE --load PRETRAINED
     --suite-finetune run: every head entry fine-tuned from the pretrained model, then everything scored;
  5. trivial baselines from the data, with the project's own readers and metric functions (the same definitions
     the tasks score with): NER all-O, the train slice's majority class, a constant similarity, the best constant
     label set for HoC, chance for QA, the question's first words for MeQSum.
Writes examples/reproduce/results/evaluation_suite.json.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    PUBMEDQA,
    ROOT,
    SHARED,
    Runner,
    base_parser,
    hash_order,
    is_heldout,
    machine,
    require,
    table,
    write_result,
)
from finetune_vs_zeroshot import CLAIM as PRETRAIN_CLAIM  # noqa: E402
from finetune_vs_zeroshot import FULL as PRETRAIN_FULL  # noqa: E402
from finetune_vs_zeroshot import SMOKE as PRETRAIN_SMOKE  # noqa: E402
from finetune_vs_zeroshot import pretrain_gpt  # noqa: E402

from megatron_biomed.eval.benchmarks import MMLU_MEDICAL  # noqa: E402

CLAIM = "evaluation_suite"
NER = {"ncbi_disease": SHARED / "bio_ner" / "ncbi_disease", "bc5cdr_chem": SHARED / "bio_ner" / "bc5cdr_chem"}
CHEMPROT = SHARED / "chemprot"
GAD = SHARED / "gad" / "train.tsv"
BIOSSES = SHARED / "biosses"
HOC = SHARED / "hoc" / "hoc_train_docs.jsonl"
MEQSUM_TRAIN = SHARED / "meqsum" / "meqsum_1000.jsonl"
MEQSUM_DEV = SHARED / "meqsum" / "mediqa_qs_2021_validation.jsonl"
MMLU_DEV = SHARED / "mmlu_medical" / "dev"
MMLU = MMLU_MEDICAL
# Every shared file read (the pretraining corpus of claim 3 aside).
INPUTS = (
    PUBMEDQA,
    GAD,
    HOC,
    MEQSUM_TRAIN,
    MEQSUM_DEV,
    CHEMPROT / "train.jsonl",
    CHEMPROT / "dev.jsonl",
    BIOSSES / "train.tsv",
    BIOSSES / "dev.tsv",
    *(f / n for f in NER.values() for n in ("train.tsv", "devel.tsv")),
    *(MMLU_DEV / f"{m}_dev.csv" for m in MMLU),
)
DEFAULT_PRETRAINED = ROOT / "runs" / "reproduce" / PRETRAIN_CLAIM / "gpt_pretrained"
# Our choice: GAD and HoC have no dev file in shared/ (their BLURB dev indices are not published): 20% of the
# train file, chosen by a hash of the sentence (GAD) or the PMID (HoC), is held out and scored instead.
HELDOUT = 0.20
# --smoke: claim 3's smoke GPT at seq 128 (at its 64 no MeQSum SFT row keeps a response token)
PRETRAIN_SMOKE_128 = dict(PRETRAIN_SMOKE, seq=128)
# The relation entries' negative labels (task.negative_labels): GAD's F1 is the positive class's (BLURB); ChemProt as
# staged (SciBERT's JSON lines) has only positive pairs, so its micro F1 over the 13 labels equals accuracy.
NEGATIVE = {"gad": ["0"]}

# Sizes, all our choice (about 9 minutes on 2 shared CPU cores; 3 more when the pretrained GPT is built). Every
# fine-tune: AdamW (no weight decay), linear warmup over the first 10% of the steps then linear decay to 0, batches
# of `batch` (micro-batches of 8), from the pretrained body with a fresh head. `*_train`: the training slice
# (records, in hash order); dev files whole.
FULL = dict(
    ner_train=1000,
    ner_iters=250,
    ner_seq=128,
    ner_lr=1e-3,
    chemprot_train=1200,
    chemprot_iters=200,
    rel_seq=128,
    rel_lr=5e-4,
    gad_train=1200,
    gad_iters=150,
    biosses_iters=60,
    biosses_seq=128,
    biosses_lr=5e-4,
    hoc_train=800,
    hoc_iters=150,
    hoc_seq=256,
    hoc_lr=1e-3,
    sft_train=600,
    sft_max_chars=800,
    sft_iters=60,
    sft_lr=5e-4,
    batch=16,
    micro_batch=8,
    limit=0,
    max_new_tokens=0,
)
SMOKE = dict(
    ner_train=12,
    ner_iters=2,
    ner_seq=32,
    ner_lr=1e-3,
    chemprot_train=12,
    chemprot_iters=2,
    rel_seq=48,
    rel_lr=5e-4,
    gad_train=12,
    gad_iters=2,
    biosses_iters=2,
    biosses_seq=48,
    biosses_lr=5e-4,
    hoc_train=12,
    hoc_iters=2,
    hoc_seq=48,
    hoc_lr=1e-3,
    sft_train=12,
    sft_max_chars=170,
    sft_iters=2,
    sft_lr=5e-4,
    batch=4,
    micro_batch=4,
    limit=8,
    max_new_tokens=8,
)


# --- the slices ---------------------------------------------------------------------------------------------------
def conll_sentences(path: Path) -> list[str]:
    """The CoNLL file's sentences, each its block of token<TAB>tag lines."""
    return [b.strip("\n") for b in path.read_text(encoding="utf-8").split("\n\n") if b.strip()]


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def lines(path: Path) -> list[str]:
    return [x for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def make_slices(data: Path, size: dict) -> dict[str, dict[str, Path]]:
    """Every head entry's train file (a slice of the shared train file, in its own layout) and scored file."""
    out = {}
    for name, folder in NER.items():
        train = hash_order(conll_sentences(folder / "train.tsv"))[: size["ner_train"]]
        out[name] = {
            "train": write_text(data / f"{name}_train.tsv", "\n\n".join(train) + "\n\n"),
            "dev": folder / "devel.tsv",
        }
    out["chemprot"] = {
        "train": write_text(
            data / "chemprot_train.jsonl",
            "\n".join(hash_order(lines(CHEMPROT / "train.jsonl"))[: size["chemprot_train"]]) + "\n",
        ),
        "dev": CHEMPROT / "dev.jsonl",
    }
    gad = lines(GAD)  # sentence<TAB>label, no header (gad/SOURCE.md)
    # keyed by the sentence: one that occurs twice (another gene/disease pair) falls on one side of the split
    held = [x for x in gad if is_heldout(x.rsplit("\t", 1)[0], HELDOUT)]
    train = [x for x in gad if not is_heldout(x.rsplit("\t", 1)[0], HELDOUT)]
    out["gad"] = {
        "train": write_text(data / "gad_train.tsv", "\n".join(hash_order(train)[: size["gad_train"]]) + "\n"),
        "dev": write_text(data / "gad_heldout.tsv", "\n".join(held) + "\n"),
    }
    out["biosses"] = {"train": BIOSSES / "train.tsv", "dev": BIOSSES / "dev.tsv"}
    docs = lines(HOC)
    held = [d for d in docs if is_heldout(json.loads(d)["pmid"], HELDOUT)]
    train = [d for d in docs if not is_heldout(json.loads(d)["pmid"], HELDOUT)]
    out["hoc"] = {
        "train": write_text(data / "hoc_train.jsonl", "\n".join(hash_order(train)[: size["hoc_train"]]) + "\n"),
        "dev": write_text(data / "hoc_heldout.jsonl", "\n".join(held) + "\n"),
    }
    return out


def finetune_set(size: dict, iters: int, lr: float, *task: str) -> dict:
    """A head entry's ``finetune:`` (tools/finetune.py's --preset and --set)."""
    sets = [
        f"train.train_iters={iters}",
        f"train.global_batch_size={size['batch']}",
        f"train.micro_batch_size={size['micro_batch']}",
        "train.eval_iters=0",
        "optimizer.name=adamw",
        f"optimizer.lr={lr}",
        "optimizer.min_lr=0.0",
        "optimizer.weight_decay=0.0",
        "optimizer.lr_decay_style=linear",
        f"optimizer.lr_warmup_iters={max(1, iters // 10)}",
        f"logging.log_interval={max(1, iters // 5)}",
        *task,
    ]
    return {"preset": "tiny-biomedlm", "set": sets}


def suite_entries(files: dict, size: dict, sft: Path) -> list[dict]:
    """The suite: every task type the suite knows (eval/suite.py TASK_TYPES but perplexity, which claims 1 and 2
    report)."""
    rel = ("task.task_type=relation", "task.main_metric=micro_f1", f"task.max_seq_length={size['rel_seq']}")
    entries = [
        {
            "name": n,
            "type": "ner",
            "head": "ner",
            "format": "conll",
            "files": files[n],
            "split": "dev",
            "metric": "entity_f1",
            "finetune": finetune_set(size, size["ner_iters"], size["ner_lr"], f"task.max_seq_length={size['ner_seq']}"),
        }
        for n in NER
    ]
    entries += [
        # ChemProt as staged (SciBERT's JSON lines) has only positive pairs: micro F1 over its 13 labels = accuracy.
        {
            "name": "chemprot",
            "type": "relation",
            "head": "classify",
            "format": "chemprot",
            "files": files["chemprot"],
            "split": "dev",
            "metric": "micro_f1",
            "finetune": finetune_set(size, size["chemprot_iters"], size["rel_lr"], *rel),
        },
        # GAD: BLURB's F1 of the positive class = micro F1 with "0" the negative label (finetune/head_tasks.py).
        {
            "name": "gad",
            "type": "relation",
            "head": "classify",
            "format": "gad",
            "files": files["gad"],
            "split": "dev",
            "metric": "micro_f1",
            "finetune": finetune_set(
                size, size["gad_iters"], size["rel_lr"], *rel, f"task.negative_labels={NEGATIVE['gad']}"
            ),
        },
        {
            "name": "biosses",
            "type": "similarity",
            "head": "similarity",
            "format": "biosses",
            "files": files["biosses"],
            "split": "dev",
            "metric": "pearson",
            "finetune": finetune_set(
                size, size["biosses_iters"], size["biosses_lr"], f"task.max_seq_length={size['biosses_seq']}"
            ),
        },
        {
            "name": "hoc",
            "type": "doc_classification",
            "head": "multilabel",
            "format": "hoc",
            "files": files["hoc"],
            "split": "dev",
            "metric": "micro_f1",
            "finetune": finetune_set(size, size["hoc_iters"], size["hoc_lr"], f"task.max_seq_length={size['hoc_seq']}"),
        },
        {"name": "pubmedqa", "benchmark": "pubmedqa", "files": {"test": PUBMEDQA}},
        *({"name": f"mmlu_{m}", "benchmark": f"mmlu_{m}", "files": {"test": MMLU_DEV / f"{m}_dev.csv"}} for m in MMLU),
        {"name": "meqsum", "generation": "meqsum", "files": {"test": MEQSUM_DEV}, "metric": "rougeL", "load": sft},
    ]
    return entries


def write_suite(path: Path, entries: list[dict]) -> Path:
    def plain(v):
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, list):
            return [plain(x) for x in v]
        return v

    header = "# written by examples/reproduce/evaluation_suite.py (train slices and held-out files in data/)\n"
    return write_text(path, header + yaml.safe_dump({"name": CLAIM, "entries": plain(entries)}, sort_keys=False))


# --- trivial baselines (the project's readers and metric functions: the tasks' own definitions) ---------------------
def baselines(entries: list[dict], sft_rows: list[dict], limit: int = 0) -> dict[str, dict]:
    """entry name -> {"value", "how"}: what a model that ignores its input scores on the entry's scored file (its
    first ``limit`` items when the suite ran with --limit)."""
    from megatron_biomed.data.metrics.classification import micro_f1, multilabel_micro_f1
    from megatron_biomed.data.metrics.entities import entity_scores
    from megatron_biomed.data.metrics.text import rouge
    from megatron_biomed.data.tasks import read_task_file

    lim = limit or None
    out = {}
    for e in entries:
        name = e["name"]
        if e.get("head") == "ner":
            dev = read_task_file(e["files"]["dev"], "conll")[:lim]
            value = entity_scores([["O"] * len(s.tags) for s in dev], [list(s.tags) for s in dev])[0].value
            out[name] = {"value": value, "how": "every word O (no entity)"}
        elif e.get("head") == "classify":
            train = read_task_file(e["files"]["train"], e["format"])
            dev = read_task_file(e["files"]["dev"], e["format"])[:lim]
            names = dev[0].label_names
            label, _ = Counter(x.label for x in train).most_common(1)[0]
            negative = [names.index(x) for x in NEGATIVE.get(name, [])]
            value = micro_f1([label] * len(dev), [x.label for x in dev], len(names), negative)[0].value
            out[name] = {
                "value": value,
                "how": f"majority class of the train slice ({names[label]!r})",
                "label_names": names,
            }
        elif e.get("head") == "similarity":
            # Pearson's r of a constant prediction is undefined (zero variance); it carries no information: 0.
            out[name] = {"value": 0.0, "how": "constant score (Pearson undefined: taken as 0)"}
        elif e.get("head") == "multilabel":
            train = read_task_file(e["files"]["train"], "hoc")
            dev = read_task_file(e["files"]["dev"], "hoc")[:lim]
            n = len(dev[0].label_names)
            freq = Counter(label for x in train for label in x.labels)
            # The best constant label set on the train slice (for micro F1, the k most frequent labels for some k).
            best, best_f1 = (), -1.0
            for k in range(n + 1):
                labels = tuple(sorted(label for label, _ in freq.most_common(k)))
                f1 = multilabel_micro_f1(
                    [[int(i in labels) for i in range(n)]] * len(train),
                    [[int(i in x.labels) for i in range(n)] for x in train],
                )[0].value
                if f1 > best_f1:
                    best, best_f1 = labels, f1
            value = multilabel_micro_f1(
                [[int(i in best) for i in range(n)]] * len(dev), [[int(i in x.labels) for i in range(n)] for x in dev]
            )[0].value
            out[name] = {"value": value, "how": f"best constant label set of the train slice ({len(best)} of {n})"}
        elif "benchmark" in e:
            path = e["files"]["test"]
            if e["benchmark"] == "pubmedqa":
                items = read_task_file(path, "pubmedqa")[:lim]
                value = sum(1 / len(x.label_names) for x in items) / len(items)
            else:
                with open(path, newline="", encoding="utf-8") as f:
                    rows = [r for r in csv.reader(f) if r][:lim]
                value = sum(1 / (len(r) - 2) for r in rows) / len(rows)  # question, choices..., answer
            out[name] = {"value": value, "how": "chance (1 / choices)"}
        elif e.get("generation") == "meqsum":
            dev = read_task_file(e["files"]["test"], "meqsum")[:lim]
            # our choice: the first k words of the question, k = the train rows' mean summary length in words
            k = round(sum(len(r["response"].split()) for r in sft_rows) / max(1, len(sft_rows)))
            preds = [" ".join(x.source.split()[:k]) for x in dev]
            value = next(s.value for s in rouge(preds, [x.summary for x in dev]) if s.metric == "rougeL")
            out[name] = {"value": value, "how": f"the question's first {k} words"}
    return out


def what_it_predicts(entry: dict, label_names=None) -> dict:
    """From the entry's logged samples (--log-samples): whether a head answers one thing whatever its input (the
    share of its most frequent prediction, the spread of its scores), and the first MeQSum generations."""
    samples = entry.get("samples") or []
    if not samples:
        return {}
    if entry["runner"] == "generation":
        return {
            "first_generations": [
                {"generation": x["generation"][:120], "reference": x["reference"]} for x in samples[:3]
            ]
        }
    preds = [x.get("pred") for x in samples]
    if entry["task"] == "similarity":
        mean = sum(preds) / len(preds)
        return {
            "prediction_sd": math.sqrt(sum((p - mean) ** 2 for p in preds) / len(preds)),
            "gold_sd": math.sqrt(
                sum((x["gold"] - sum(y["gold"] for y in samples) / len(samples)) ** 2 for x in samples) / len(samples)
            ),
        }
    if entry["task"] == "multilabel":
        return {
            "mean_labels_predicted": sum(map(sum, preds)) / len(preds),
            "mean_labels_gold": sum(sum(x["gold"]) for x in samples) / len(samples),
        }
    if entry["task"] in ("classify", "mc") or entry["runner"] == "benchmark":
        top, count = Counter(preds).most_common(1)[0]
        top = label_names[top] if label_names else top
        return {
            "most_frequent_prediction": top,
            "its_share": count / len(preds),
            "distinct_predictions": len(set(map(str, preds))),
        }
    return {}


def type_averages(rows: list[tuple[str, float]]) -> tuple[dict[str, float], float]:
    """Per type the mean, then the mean of the type means (eval/suite.py summarize's rule)."""
    types: dict[str, list[float]] = {}
    for kind, v in rows:
        types.setdefault(kind, []).append(v)
    per = {k: sum(v) / len(v) for k, v in types.items()}
    return per, sum(per.values()) / len(per)


# --- the run ----------------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    p = base_parser(__doc__)
    p.add_argument(
        "--pretrained",
        default=None,
        help=f"the pretrained checkpoint (default {DEFAULT_PRETRAINED.relative_to(ROOT)}, built here by "
        f"claim 3's step when absent; --smoke builds a 1-layer one)",
    )
    args = p.parse_args(argv)
    size = SMOKE if args.smoke else FULL
    require(*INPUTS)
    work = Path(args.work_dir or ROOT / "runs" / "reproduce" / (CLAIM + ("-smoke" if args.smoke else "")))
    shutil.rmtree(work, ignore_errors=True)
    run = Runner(work, args.verbose, args.in_process)
    t0 = time.time()
    load_start = machine()["load_average"]
    data = work / "data"

    # 1. the pretrained tiny GPT (claim 3's)
    pretrain_size = PRETRAIN_SMOKE_128 if args.smoke else PRETRAIN_FULL
    pretrained = Path(args.pretrained) if args.pretrained else (None if args.smoke else DEFAULT_PRETRAINED)
    built = pretrained is None or not pretrained.is_dir()
    if built:
        pretrained = pretrain_gpt(run, work, pretrain_size, args.seed, args.smoke)
    pretrained = pretrained.resolve()

    # 2. the slices
    files = make_slices(data, size)

    # 3. MeQSum SFT rows and the SFT checkpoint
    sft_all = data / "meqsum_sft_all.jsonl"
    run.tool("make_generative_sft.py", "--format", "meqsum", "--input", MEQSUM_TRAIN, "--output", sft_all)
    # our choice: rows whose prompt + response fit the model's context (SFT truncates on the right: a longer row
    # loses its response), in hash order
    fits = [
        x for x in lines(sft_all) if len((r := json.loads(x))["prompt"]) + len(r["response"]) <= size["sft_max_chars"]
    ]
    sft_rows = [json.loads(x) for x in hash_order(fits)[: size["sft_train"]]]
    sft_file = write_text(data / "meqsum_sft_train.jsonl", "".join(json.dumps(r) + "\n" for r in sft_rows))
    sft = work / "meqsum_sft"
    sft_sets = finetune_set(size, size["sft_iters"], size["sft_lr"])["set"]  # SFT packs to the model's seq_length
    run.tool(
        "finetune.py",
        "--task",
        "sft",
        "--format",
        "sft",
        "--init-from",
        pretrained,
        "--train-file",
        sft_file,
        "--save",
        sft,
        "--preset",
        "tiny-biomedlm",
        *[a for x in [*sft_sets, f"train.seed={args.seed}"] for a in ("--set", x)],
        label="finetune-meqsum-sft",
    )

    # 4. the suite, one run
    entries = suite_entries(files, size, sft)
    for e in entries:
        if "finetune" in e:
            e["finetune"]["set"].append(f"train.seed={args.seed}")
    suite_file = write_suite(work / "suite.yaml", entries)
    report_file = work / "suite_report.json"
    run.tool(
        "evaluate.py",
        "--suite",
        suite_file,
        "--load",
        pretrained,
        "--suite-finetune",
        "--suite-workdir",
        work / "finetuned",
        "--output",
        report_file,
        "--no-progress",
        "--log-samples",
        *(["--limit", size["limit"]] if size["limit"] else []),
        *(["--max-new-tokens", size["max_new_tokens"]] if size["max_new_tokens"] else []),
        label="evaluate-suite",
    )
    report = json.loads(report_file.read_text())

    # 5. baselines and the table
    base = baselines(entries, sft_rows, size["limit"])
    how = {"head": "fine-tuned", "benchmark": "zero-shot", "generation": "SFT, greedy"}
    rows, result_entries = [], []
    for r in report["entries"]:
        b = base[r["name"]]["value"]
        se = r["stderr"] if r["stderr"] is not None and r["stderr"] == r["stderr"] else None
        margin = r["value"] - b
        rows.append(
            [
                r["name"],
                r["type"],
                r["metric"],
                how[r["runner"]],
                r["n"],
                r["value"],
                "" if se is None else f"{se:.4f}",
                b,
                f"{margin:+.4f}",
            ]
        )
        result_entries.append(
            {
                **{k: r[k] for k in ("name", "type", "runner", "task", "metric", "value", "n")},
                "stderr": se,
                "file": r["file"],
                "baseline": b,
                "baseline_how": base[r["name"]]["how"],
                "margin": margin,
                "all_metrics": {m["metric"]: m["value"] for m in r["metrics"]},
                "predictions": what_it_predicts(r, base[r["name"]].get("label_names")),
            }
        )
    base_types, base_overall = type_averages([(r["type"], base[r["name"]]["value"]) for r in report["entries"]])
    for kind, t in report["types"].items():
        rows.append(
            [
                f"average {kind}",
                "",
                "",
                "",
                len(t["entries"]),
                t["average"],
                "",
                base_types[kind],
                f"{t['average'] - base_types[kind]:+.4f}",
            ]
        )
    rows.append(
        [
            "overall (mean of type averages)",
            "",
            "",
            "",
            "",
            report["overall"],
            "",
            base_overall,
            f"{report['overall'] - base_overall:+.4f}",
        ]
    )
    wall = time.time() - t0
    beats = [e["name"] for e in result_entries if e["margin"] > 0]
    print(
        f"\nIssue 20's evaluation suite on the shared dev data: a {'smoke' if args.smoke else '4 x 128'} PubMed GPT, "
        f"heads fine-tuned on train slices\n"
    )
    print(table(["entry", "type", "metric", "scored", "n", "score", "stderr", "trivial baseline", "margin"], rows))
    print(f"\nabove the trivial baseline: {len(beats)} of {len(result_entries)} ({', '.join(beats) or 'none'})")
    for e in result_entries:  # heads that answer the same whatever they read
        d = e["predictions"]
        if e["runner"] == "head" and d.get("its_share", 0) >= 0.9:
            print(f"note: {e['name']} predicts {d['most_frequent_prediction']} for {d['its_share']:.0%} of its items")
        if "mean_labels_predicted" in d and d["mean_labels_predicted"] < 0.1:
            print(
                f"note: {e['name']} predicts {d['mean_labels_predicted']:.2f} labels per item "
                f"(gold {d['mean_labels_gold']:.2f})"
            )
    print(f"wall time {wall:.0f}s, seed {args.seed}")
    result = {
        "claim": "issue 20's evaluation suite runs end to end on the public dev data; each entry beside its trivial "
        "baseline",
        "smoke": args.smoke,
        "sizes": size,
        "seed": args.seed,
        "pretrained": {
            "checkpoint": str(pretrained),
            "built_here": built,
            "sizes": pretrain_size if built else "see its run_config.yaml",
        },
        "data": {
            "ner_train_slice": "sha256 order of the sentence blocks, first ner_train",
            "chemprot_train_slice": "sha256 order of the train lines, first chemprot_train",
            "gad": f"train.tsv split by sha256(sentence): {HELDOUT:.0%} held out and scored, train slice from the rest",
            "hoc": f"hoc_train_docs.jsonl split by sha256(pmid): {HELDOUT:.0%} held out and scored",
            "biosses": "train.tsv -> dev.tsv whole",
            "meqsum": "SFT on meqsum_1000 rows (sha256 order, first sft_train), scored on mediqa_qs_2021_validation",
            "qa": "zero-shot on pqal_trainval_500 and the six mmlu_medical dev files",
            "counts": {e["name"]: e["n"] for e in result_entries},
        },
        "entries": result_entries,
        "types": {
            k: {"average": t["average"], "baseline": base_types[k], "entries": t["entries"]}
            for k, t in report["types"].items()
        },
        "overall": report["overall"],
        "overall_baseline": base_overall,
        "beats_baseline": beats,
        "scoring_seconds": report["scoring_seconds"],
        "wall_time_s": round(wall, 1),
        "tool_seconds": run.seconds,
        "machine": {**machine(), "load_average_at_start": load_start},
    }
    print(f"result: {write_result(CLAIM, result, args.smoke, args.results_dir and Path(args.results_dir))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
