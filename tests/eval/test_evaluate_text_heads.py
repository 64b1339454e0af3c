"""tools/finetune.py --task similarity and tools/evaluate.py --head similarity end to end (one process each): the
head trains from the toy checkpoint on BIOSSES-format pairs, and the report scores it with Pearson's r, the
number its task computes on the same outputs; --head refuses a task that is not a head task."""

from __future__ import annotations

import json
import random

import pytest
from launch import ROOT, run_finetune, run_tool
from toydata import ANIMALS, COLOURS, FT_BASE

from megatron_biomed.config.experiment import ConfigError
from megatron_biomed.data.metrics.classification import pearson
from megatron_biomed.eval.cli import build_arg_parser, evaluate

EVALUATE = ROOT / "tools" / "evaluate.py"
HEADER = "sentence_id\tsentence_1\tsentence_2\tannotator_a\tannotator_b\tannotator_c\tannotator_d\tannotator_e"


def biosses_pairs(path, n: int, seed: int):
    """Toy-vocabulary pairs whose five annotators score how many colours the second sentence names (0-4)."""
    rng = random.Random(seed)
    rows = [HEADER]
    for i in range(n):
        k = rng.randint(0, 4)
        second = rng.sample(COLOURS, k) + rng.sample(ANIMALS, 4 - k)
        rng.shuffle(second)
        rows.append(f"{i}\t{' '.join(rng.sample(ANIMALS, 3))}\t{' '.join(second)}\t" + "\t".join([str(k)] * 5))
    path.write_text("\n".join(rows) + "\n")
    return path


def test_similarity_fine_tuned_and_scored_through_the_tools(toy, tmp_path):
    train = biosses_pairs(tmp_path / "train.tsv", 32, 1)
    test = biosses_pairs(tmp_path / "test.tsv", 12, 2)
    ckpt = tmp_path / "sim"
    args = ["--task", "similarity", "--init-from", str(toy["pretrained"]), "--train-file", str(train),
            "--format", "biosses", "--save", str(ckpt)]  # fmt: skip
    run_finetune(1, args, FT_BASE + ["train.train_iters=3"], tmp_path)
    out = tmp_path / "report.json"
    run_tool(EVALUATE, 1, ["--load", str(ckpt), "--head", "similarity", "--test-file", str(test), "--log-samples",
                           "--no-progress", "--output", str(out)], tmp_path)  # fmt: skip
    report = json.loads(out.read_text())
    (row,) = report["results"]
    samples = report["samples"]["biosses:similarity"]
    assert (row["task"], row["metric"], row["n"]) == ("biosses:similarity", "pearson", 12)
    assert [s["gold"] for s in samples] == [float(line.split("\t")[3]) for line in test.read_text().splitlines()[1:]]
    # The reported r is Pearson's r of the logged predictions (scipy), i.e. the task's metric on its outputs.
    assert row["value"] == pytest.approx(pearson([s["pred"] for s in samples], [s["gold"] for s in samples]).value)

    with pytest.raises(ConfigError, match="--head sft: not a head task; head tasks: mc, classify, ner, similarity"):
        evaluate(build_arg_parser().parse_args(["--load", str(ckpt), "--head", "sft", "--test-file", str(test)]))
