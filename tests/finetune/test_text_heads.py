"""The similarity (regression) and multilabel heads, and classify as relation extraction: inputs laid out by
the input formats, each head's forward and loss against a float64 reference on fresh random inputs, the
task options (negative labels, main metric, task type), and a tiny model that learns each benchmark's task
above its trivial baseline in a few seconds.

Items are written in each corpus's own file schema (GAD TSV, BIOSSES TSV, HoC documents) and read by the
project's readers; the text is ours (learnable cues), read one token per character (tests/finetune/chartasks.py).
"""

from __future__ import annotations

import math
import os
import random

import pytest
import torch
from chartasks import ADDED, EOD, ids, use_char_tokenizer
from toydata import biosses_file, hoc_file

from megatron_biomed.config.loading import load_config
from megatron_biomed.data.gpt_dataset import collate
from megatron_biomed.data.tasks import read_biosses, read_gad, read_hoc
from megatron_biomed.finetune.data import TaskSetupError
from megatron_biomed.models.heads import find_head, flatten_choices, head_forward
from megatron_biomed.training.tasks import build_task

WORDS = ["cell", "gene", "tumor", "growth", "protein", "signal", "blood", "drug", "dose", "rat"]


def gad_file(path, rows):
    path.write_text("".join(f"{s}\t{y}\n" for s, y in rows))
    return path


def config(task: str, fmt: str, path, *sets: str, seq: int = 32):
    sets = [f"task.name={task}", "data.tokenizer=char", f"task.train_file={path}", f"task.format={fmt}",
            f"task.max_seq_length={seq}", *sets]  # fmt: skip
    return load_config("tiny-biomedlm", overrides=sets)


# ---- layouts ---------------------------------------------------------------------------------------------------


def test_sentence_pairs_and_texts_are_laid_out_by_the_input_format(monkeypatch, tmp_path):
    use_char_tokenizer(monkeypatch)
    pairs = biosses_file(tmp_path / "b.tsv", [("ab", "cde", [1, 2, 3, 4, 0])])
    plain = build_task(config("similarity", "biosses", pairs), None)
    sample = plain.build_datasets((1, 0))[0].samples[0]
    # plain: first sentence, newline, second; read at the last real token; gold = the annotators' mean
    assert sample["tokens"][0, :6].tolist() == ids("ab\ncde") and sample["tokens"][0, 6:].eq(EOD).all()
    assert sample["last_index"].tolist() == [5] and sample["label"].item() == pytest.approx(2.0)
    tokens = build_task(config("similarity", "biosses", pairs, "task.input_format=biomedlm-tokens"), None)
    sample = tokens.build_datasets((1, 0))[0].samples[0]
    want = [ADDED["<|QUESTION1|>"], *ids("ab"), ADDED["<|QUESTION2|>"], *ids("cde"), ADDED["<|ANSWER|>"]]
    assert sample["tokens"][0, :8].tolist() == want and sample["last_index"].tolist() == [7]
    assert sample["tokens"][0, 8:].eq(ADDED["[PAD]"]).all()

    docs = hoc_file(tmp_path / "h.jsonl", [("xyz", [0, 9])])
    task = build_task(config("multilabel", "hoc", docs), None)
    sample = task.build_datasets((1, 0))[0].samples[0]
    assert sample["tokens"][0, :3].tolist() == ids("xyz") and sample["last_index"].tolist() == [2]
    assert sample["label"].tolist() == [1.0] + [0.0] * 8 + [1.0]
    assert (plain.task_type, task.task_type) == ("similarity", "doc_classification")
    with pytest.raises(TaskSetupError, match=r"task similarity reads SentencePairItem records; task.format='hoc'"):
        build_task(config("similarity", "hoc", docs), None)
    with pytest.raises(TaskSetupError, match="does not lay out the items of task multilabel"):
        build_task(config("multilabel", "hoc", docs, "task.input_format=biomedlm-mc"), None)


# ---- forward and loss against float64 ------------------------------------------------------------------------


def _fresh_items(task_name: str, tmp_path, rng: random.Random):
    def sentence():
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 6)))

    if task_name == "similarity":
        rows = [(sentence(), sentence(), [rng.randint(0, 4) for _ in range(5)]) for _ in range(6)]
        return "biosses", biosses_file(tmp_path / "b.tsv", rows)
    docs = [(sentence(), rng.sample(range(10), rng.randint(0, 3))) for _ in range(6)]
    return "hoc", hoc_file(tmp_path / "h.jsonl", docs)


@pytest.mark.parametrize("task_name", ["similarity", "multilabel"])
def test_head_forward_and_loss_match_float64(task_name, monkeypatch, tmp_path, single_rank_parallel):
    """On fresh random items: the head's outputs equal ``hidden[read position] @ W.T`` in float64 (the hidden
    state from the same model, read where the raw text ends), and the summed loss equals the float64 formula
    (squared error; BCE = softplus(x) - y x averaged over labels), summed over the items."""
    from inprocess import build

    seed = int.from_bytes(os.urandom(4), "little")
    fmt, path = _fresh_items(task_name, tmp_path, random.Random(seed))
    use_char_tokenizer(monkeypatch)
    task, model = build(config(task_name, fmt, path))
    samples = task.build_datasets((6, 0))[0].samples
    batch = collate(samples)
    scores, loss_func = task.forward_step(iter([batch]), model)
    loss, n, _ = loss_func(scores)
    flat = flatten_choices(batch, task.seq_length())
    with torch.no_grad():
        hidden = model(flat["tokens"], flat["position_ids"], None,
                       output_processor=lambda *, hidden_states, **_: hidden_states).double()  # fmt: skip
    w = find_head(model).proj.weight.double()
    reads = [min(len(ids(t)), task.seq_length()) - 1 for t in _texts(task)]  # plain: cut from the left
    assert flat["last_index"].tolist() == reads, seed
    want = torch.stack([hidden[p, r] for r, p in enumerate(reads)]) @ w.T  # [items, outputs]
    assert scores.shape == want.shape == (6, task.head_outputs())
    assert torch.allclose(scores.double(), want, rtol=1e-5, atol=1e-6), (seed, scores, want)
    gold = batch["label"].double()
    if task_name == "similarity":
        want_loss = ((want[:, 0] - gold) ** 2).sum()
    else:
        want_loss = (torch.log1p(torch.exp(-want.abs())) + want.clamp_min(0) - gold * want).mean(-1).sum()
    assert int(n) == 6 and float(loss) == pytest.approx(float(want_loss), rel=1e-5), seed


def _texts(task):
    items = task.train_items
    if task.name == "similarity":
        return [f"{it.sentence1}\n{it.sentence2}" for it in items]
    return [it.text for it in items]


# ---- relation extraction through classify -----------------------------------------------------------------------


def test_classify_options_for_relation_extraction(monkeypatch, tmp_path):
    use_char_tokenizer(monkeypatch)
    path = gad_file(tmp_path / "g.tsv", [("@GENE$ a @DISEASE$", 1), ("@GENE$ b @DISEASE$", 0)] * 2)
    gad = build_task(config("classify", "gad", path, "task.negative_labels=['0']", "task.task_type=relation"), None)
    assert gad.task_type == "relation" and gad.main_metric == "micro_f1"
    logits = torch.tensor([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])  # picks 1, 1, 0, 0; gold 1, 0, 1, 0
    rows = gad.score(gad.train_items, logits)
    assert [r.metric for r in rows] == ["micro_f1", "acc", "macro_f1", "precision", "recall"]
    assert rows[0].value == pytest.approx(0.5)  # binary F1 of "1": P = 1/2, R = 1/2
    plain = build_task(config("classify", "gad", path), None)
    assert plain.task_type == "qa" and [r.metric for r in plain.score(plain.train_items, logits)] == ["acc", "macro_f1"]
    picked = build_task(config("classify", "gad", path, "task.main_metric=macro_f1"), None)
    assert picked.score(picked.train_items, logits)[0].metric == "macro_f1"
    for bad, match in (("task.negative_labels=['false']", r"task.negative_labels \['false'\] are not labels"),
                       ("task.negative_labels=['0','1']", "leaves no positive label"),
                       ("task.task_type=relations", "task.task_type='relations': expected one of"),
                       ("task.main_metric=pearson", "task.main_metric='pearson': task classify reports")):  # fmt: skip
        with pytest.raises(TaskSetupError, match=match):
            build_task(config("classify", "gad", path, bad), None)


# ---- a tiny model learns each task ------------------------------------------------------------------------------


def _train(task, model, steps: int, lr: float = 1e-3, seed: int = 0):
    """Adam on the task's own loss (forward_step), micro-batches of 8 drawn from the training items."""
    samples = task.build_datasets((8, 0))[0].samples
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        pick = torch.randint(len(samples), (8,), generator=g).tolist()
        out, loss_func = task.forward_step(iter([collate([samples[i] for i in pick])]), model)
        loss, n, _ = loss_func(out)
        opt.zero_grad()
        (loss / n).backward()
        opt.step()


def _outputs(task, model, items):
    from megatron_biomed.finetune.encoding import TruncationCount

    count = TruncationCount()
    batch = collate([task.encode(it, count) for it in items])
    model.eval()
    with torch.no_grad():
        return head_forward(model, flatten_choices(batch, task.seq_length())).double()


def test_tiny_model_learns_gad_relation_above_the_majority_class(monkeypatch, tmp_path, single_rank_parallel):
    """GAD-format sentences whose association is said by a cue word: held-out micro F1 over the positive class
    (BLURB's GAD metric) well above the majority-class baseline's."""
    from inprocess import build

    rng = random.Random(3)

    def rows(n):
        out = []
        for _ in range(n):
            y = int(rng.random() < 0.4)  # the majority class is the negative one
            cue = rng.choice(["linked to", "causes"] if y else ["unrelated", "absent"])
            out.append((f"@GENE$ {rng.choice(WORDS)} in @DISEASE$ {cue}", y))
        return out

    use_char_tokenizer(monkeypatch)
    train = gad_file(tmp_path / "train.tsv", rows(48))
    test = gad_file(tmp_path / "test.tsv", rows(40))
    task, model = build(config("classify", "gad", train, "task.negative_labels=['0']", "task.task_type=relation"))
    items = read_gad(test)
    _train(task, model, steps=80)
    got = task.score(items, _outputs(task, model, items))[0]
    majority = task.score(items, torch.tensor([[1.0, 0.0]] * len(items)))[0]  # always "0"
    assert got.metric == "micro_f1" and majority.value == 0.0
    print(f"GAD micro F1 {got.value:.3f} vs majority class {majority.value:.3f}")
    assert got.value >= 0.8, got


def test_tiny_model_learns_biosses_similarity(monkeypatch, tmp_path, single_rank_parallel):
    """BIOSSES-format pairs whose gold (the mean of five annotators) is spelled by a word of the second
    sentence: held-out Pearson's r well above a constant prediction's (no correlation: NaN)."""
    from inprocess import build

    rng = random.Random(4)
    levels = ["none", "few", "some", "most", "all"]

    def rows(n):
        out = []
        for _ in range(n):
            k = rng.randint(0, 4)
            scores = [max(0, min(4, k + rng.choice([-1, 0, 0, 1]))) for _ in range(5)]
            out.append((" ".join(rng.sample(WORDS, 2)), f"{rng.choice(WORDS)} {levels[k]}", scores))
        return out

    use_char_tokenizer(monkeypatch)
    task, model = build(config("similarity", "biosses", biosses_file(tmp_path / "train.tsv", rows(48))))
    items = read_biosses(biosses_file(tmp_path / "test.tsv", rows(24)))
    _train(task, model, steps=80)
    got = task.score(items, _outputs(task, model, items))[0]
    constant = task.score(items, torch.full((len(items), 1), 2.0, dtype=torch.float64))[0]
    assert got.metric == "pearson" and math.isnan(constant.value)
    print(f"BIOSSES Pearson {got.value:.3f} vs constant prediction {constant.value}")
    assert got.value >= 0.8, got


def test_tiny_model_learns_hoc_multilabel(monkeypatch, tmp_path, single_rank_parallel):
    """HoC-format documents whose hallmarks are each named by a cue word: held-out micro F1 well above the best
    constant prediction's (every label on every document; predicting none scores 0)."""
    from inprocess import build

    rng = random.Random(5)
    cues = {0: "spread", 4: "escape", 7: "survive"}

    def docs(n):
        out = []
        for _ in range(n):
            labels = [j for j in cues if rng.random() < 0.4]
            words = [cues[j] for j in labels] + rng.sample(WORDS, 2)
            rng.shuffle(words)
            out.append((" ".join(words), labels))
        return out

    use_char_tokenizer(monkeypatch)
    task, model = build(config("multilabel", "hoc", hoc_file(tmp_path / "train.jsonl", docs(64))))
    items = read_hoc(hoc_file(tmp_path / "test.jsonl", docs(32)))
    _train(task, model, steps=150)
    got = task.score(items, _outputs(task, model, items))[0]
    cued = torch.tensor([[1.0 if j in cues else -1.0 for j in range(10)]] * len(items))  # every cued label
    every = max(task.score(items, torch.full((len(items), 10), 1.0))[0].value, task.score(items, cued)[0].value)
    assert task.score(items, torch.full((len(items), 10), -1.0))[0].value == 0.0  # predicting no label
    print(f"HoC micro F1 {got.value:.3f} vs best constant prediction {every:.3f}")
    assert got.metric == "micro_f1" and got.value >= every + 0.2, (got, every)
