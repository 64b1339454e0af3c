"""examples/reproduce/: the three reproduction scripts and the evaluation-suite script run end to end at their --smoke
size (so that they cannot rot silently: every tool, flag and report field they use is exercised), and the held-out
splits they rely on are deterministic and disjoint from the training text. The full runs are not in CI (README:
"Reproducing the papers' claims in miniature"); at smoke size their numbers mean nothing and are not checked against
the claims.

The tools run in this process (``--in-process``: the same argv as the scripts' subprocesses) so that torch and
megatron-core are imported once rather than once per tool."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import yaml
from launch import ROOT

REPRODUCE = ROOT / "examples" / "reproduce"


def _load(name: str):
    sys.path.insert(0, str(REPRODUCE))
    spec = importlib.util.spec_from_file_location(f"reproduce_{name}", REPRODUCE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


common = _load("common")
needed = (common.PUBMED_JSONL, common.C4_JSONL, common.WIKITEXT, common.PUBMEDQA)
pytestmark = pytest.mark.skipif(not all(p.is_file() for p in needed),
                                reason=f"shared corpora not found under {common.SHARED}")


def _jsonl(path):
    return [json.loads(x)["text"] for x in path.read_text().splitlines()]


def test_splits_are_deterministic_and_disjoint():
    for docs in (common.pubmed_documents(), common.c4_documents(), common.wikitext_documents()):
        train, held = common.split(docs)
        assert len(train) + len(held) == len(docs)
        assert 0.05 * len(docs) <= len(held) <= 0.15 * len(docs)
        assert not set(train) & set(held)
        assert set(common.split(list(reversed(docs)))[1]) == set(held)  # the split does not depend on order
    articles = common.wikitext_documents()
    assert len(articles) == 60  # WikiText-2 v1 validation: 60 articles
    assert all(t.split("\n", 1)[0] == f"= {k} =" for k, t in articles)


def test_smoke_runs_write_their_results(tmp_path, capsys):
    results = tmp_path / "results"
    # claim 2 for the Mamba2 family only: its GPT runs are the same driver code with the preset the other two
    # scripts already run (half of claim 2's launches saved)
    extra = {"continued_pretraining": ["--families", "mamba2"]}
    for name in ("domain_tokenizer", "continued_pretraining", "finetune_vs_zeroshot"):
        work = tmp_path / name
        rc = _load(name).main(["--smoke", "--in-process", "--work-dir", str(work), "--results-dir", str(results),
                               *extra.get(name, [])])
        out = capsys.readouterr().out
        assert rc == 0, out
        assert "wall time" in out and "seed 1234" in out
        r = json.loads((results / f"{name}.smoke.json").read_text())
        assert r["smoke"] is True and r["seed"] == 1234 and r["machine"]["cpus"] >= 1
        if name == "domain_tokenizer":
            held, train = _jsonl(work / "data/pubmed_heldout.jsonl"), _jsonl(work / "data/pubmed_train.jsonl")
            assert held and not set(held) & set(train)
            bpb = r["table"][next(k for k in r["table"] if k.startswith("tiny GPT bits per byte"))]
            assert all(0 < v < 16 for v in bpb.values())  # a byte is at most 8 bits for a sane model, 16 leaves room
            assert set(r["term_pieces"]) == {"pubmed", "general"}
        elif name == "continued_pretraining":
            for family in ("mamba2",):
                for stage in ("base", "blend", "pubmed_only"):
                    for corpus in ("pubmed", "c4", "wikipedia"):
                        v = r["results"][family][stage][corpus]
                        assert math.isfinite(v["perplexity"]) and v["perplexity"] > 1, (family, stage, corpus)
            assert r["blend"] == {"pubmed": 0.8, "c4": 0.1, "wikipedia": 0.1}
        else:
            folds = r["per_fold"]
            assert sum(f["test"] for f in folds) == r["items"]
            items = json.loads(common.PUBMEDQA.read_text())
            for f in folds:  # the majority baseline recomputed from the fold files the script wrote
                test = json.loads((work / f"data/fold{f['fold']}_test.json").read_text())
                train = json.loads((work / f"data/fold{f['fold']}_train.json").read_text())
                assert not set(test) & set(train) and set(test) | set(train) <= set(items)
                hits = sum(v["final_decision"] == f["majority_label"] for v in test.values())
                assert f["majority_acc"] == pytest.approx(hits / len(test))
                assert 0 <= f["finetuned_acc"] <= 1 and 0 <= f["zeroshot_acc"] <= 1


def test_evaluation_suite_smoke(tmp_path, capsys):
    """Issue 20's suite reproduction at --smoke size: one tools/evaluate.py --suite run covers every task type, the
    train slices are disjoint from what is scored, and the trivial baselines are the data's."""
    module = _load("evaluation_suite")
    missing = [str(p) for p in module.INPUTS if not p.is_file()]
    if missing:
        pytest.skip(f"shared task files not found: {', '.join(missing)}")
    results = tmp_path / "results"
    work = tmp_path / "evaluation_suite"
    rc = module.main(["--smoke", "--in-process", "--work-dir", str(work), "--results-dir",
                                         str(results)])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "wall time" in out and "seed 1234" in out
    r = json.loads((results / "evaluation_suite.smoke.json").read_text())
    assert r["smoke"] is True and r["pretrained"]["built_here"] is True
    by_name = {e["name"]: e for e in r["entries"]}
    assert {e["type"] for e in r["entries"]} == {"ner", "relation", "similarity", "doc_classification", "qa",
                                                  "generation"}  # fmt: skip
    assert by_name["chemprot"]["metric"] == by_name["gad"]["metric"] == "micro_f1"
    assert by_name["ncbi_disease"]["baseline"] == 0.0 and by_name["mmlu_anatomy"]["baseline"] == 0.25
    assert by_name["pubmedqa"]["baseline"] == pytest.approx(1 / 3)
    assert all(0 <= e["value"] <= 1 and e["margin"] == pytest.approx(e["value"] - e["baseline"])
               for e in r["entries"] if e["type"] != "similarity")  # fmt: skip
    assert r["overall"] == pytest.approx(sum(t["average"] for t in r["types"].values()) / len(r["types"]))
    suite = yaml.safe_load((work / "suite.yaml").read_text())
    for e in suite["entries"]:  # never an official test split (withheld)
        assert all("test" not in Path(p).name.lower() for p in e["files"].values()), e["name"]
    gad_train, gad_held = ({x.rsplit("\t", 1)[0] for x in (work / f"data/gad_{s}.tsv").read_text().splitlines()}
                           for s in ("train", "heldout"))  # fmt: skip
    hoc_train, hoc_held = ({json.loads(x)["pmid"] for x in (work / f"data/hoc_{s}.jsonl").read_text().splitlines()}
                           for s in ("train", "heldout"))  # fmt: skip
    assert gad_held and hoc_held and not gad_train & gad_held and not hoc_train & hoc_held
