"""Small task data of our own making (in the real benchmarks' schemas) and a tokenizer for it.

The multiple-choice toy task is learnable from content alone: each question asks for the one option that is
a colour among animals, and the options are written in a random order.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

COLOURS = ["red", "blue", "green", "yellow", "purple", "orange", "black", "white"]
ANIMALS = ["cat", "dog", "horse", "mouse", "eagle", "shark", "frog", "snake", "whale", "otter", "tiger", "camel"]
QUESTIONS = ["Which one is a colour?", "Pick the colour.", "Which option names a colour?"]


def make_tokenizer(out: Path) -> Path:
    """A byte-level BPE of 400 tokens trained on the toy vocabulary (fits tiny presets' 512 rows)."""
    from megatron_biomed.tokenizer import TokenizerTrainConfig, train_bpe_tokenizer

    rng = random.Random(0)
    words = COLOURS + ANIMALS + " ".join(QUESTIONS).split() + ["yes", "no", "maybe", "Question:", "Answer:"]
    texts = [" ".join(rng.choice(words) for _ in range(30)) for _ in range(400)]
    train_bpe_tokenizer(texts, TokenizerTrainConfig(vocab_size=400, min_frequency=1), output_dir=out)
    return out


def mc_items(n: int, seed: int, num_options: int = 4) -> list[dict]:
    """MedQA-schema rows: {"question", "options": {"A".."D"}, "answer_idx"}."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        opts = [rng.choice(COLOURS)] + rng.sample(ANIMALS, num_options - 1)
        order = list(range(num_options))
        rng.shuffle(order)
        letters = "ABCDE"[:num_options]
        options = {letters[i]: opts[order[i]] for i in range(num_options)}
        answer = letters[order.index(0)]
        rows.append({"question": rng.choice(QUESTIONS), "options": options, "answer_idx": answer})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def pubmedqa_items(n: int, seed: int) -> dict:
    """ori_pqal.json-style dict; the label is decided by a word of the context (learnable)."""
    rng = random.Random(seed)
    out = {}
    for i in range(n):
        label = rng.choice(["yes", "no", "maybe"])
        cue = {"yes": "red", "no": "blue", "maybe": "green"}[label]
        ctx = [" ".join(rng.sample(ANIMALS, 3)), f"the {cue} {rng.choice(ANIMALS)}"]
        out[str(10_000 + i)] = {
            "QUESTION": rng.choice(QUESTIONS),
            "CONTEXTS": ctx,
            "final_decision": label,
            "LONG_ANSWER": f"the answer is {label}",
        }
    return out


def ner_conll(n: int, seed: int) -> str:
    """A CoNLL/BIO file (token<TAB>tag): animals are entities, a colour just before one starts it ("red cat" ->
    B-Animal I-Animal); every fourth sentence is long enough (40 words) to be cut into windows at 32 tokens."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        words = [rng.choice(COLOURS + ANIMALS + ["the", "and", "saw", "a"]) for _ in range(40 if i % 4 == 0 else 8)]
        tags = []
        for k, w in enumerate(words):
            if w in ANIMALS:
                tags.append("I-Animal" if k and words[k - 1] in COLOURS else "B-Animal")
            elif w in COLOURS and k + 1 < len(words) and words[k + 1] in ANIMALS:
                tags.append("B-Animal")
            else:
                tags.append("O")
        out.append("".join(f"{w}\t{t}\n" for w, t in zip(words, tags)))
    return "\n".join(out)


def sft_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        a = rng.choice(ANIMALS)
        if i % 2:
            rows.append({"prompt": f"Question: name a colour after {a}", "response": rng.choice(COLOURS)})
        else:
            rows.append({"messages": [{"role": "user", "content": f"Which one is a colour? {a}"},
                                      {"role": "assistant", "content": " ".join(rng.sample(COLOURS, 2))}]})
    return rows


def preference_rows(n: int, seed: int) -> list[dict]:
    """Chosen = a colour answer, rejected = an animal (a mismatched answer)."""
    rng = random.Random(seed)
    return [
        {"prompt": rng.choice(QUESTIONS), "chosen": rng.choice(COLOURS), "rejected": rng.choice(ANIMALS)}
        for _ in range(n)
    ]


# Every step updates the weights (no zero-lr warmup step), fp32, no dropout, 32-token task sequences.
FT_BASE = [
    "train.train_iters=4",
    "train.global_batch_size=8",
    "train.micro_batch_size=2",
    "train.eval_iters=0",
    "train.precision=fp32",
    "optimizer.lr=1e-3",
    "optimizer.lr_warmup_iters=0",
    "optimizer.lr_decay_style=constant",
    "task.max_seq_length=32",
]

# BIOSSES's columns (../shared/data/biosses/SOURCE.md): gold = the mean of the five annotators' scores.
BIOSSES_HEADER = "sentence_id\tsentence_1\tsentence_2\tannotator_a\tannotator_b\tannotator_c\tannotator_d\tannotator_e"


def biosses_file(path, rows):
    """A BIOSSES-layout TSV of ``(sentence_1, sentence_2, five scores)`` rows."""
    lines = [BIOSSES_HEADER] + [f"{i}\t{a}\t{b}\t" + "\t".join(str(v) for v in scores)
                                for i, (a, b, scores) in enumerate(rows, 1)]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    return path


def hoc_file(path, docs):
    """HoC documents of ``(text, label indices)``: each sentence's label group opened by '<' (one sentence per
    document here)."""
    from megatron_biomed.data.tasks import HOC_LABELS

    rows = [{"pmid": str(i), "text": text + "\n", "labels": "<" + " AND ".join(HOC_LABELS[j] for j in labels)}
            for i, (text, labels) in enumerate(docs, 1)]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def similarity_pairs(n: int, seed: int) -> list[tuple]:
    """Pairs of four-animal sentences scored by how many animals they share (0..4, the same from every annotator)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a = rng.sample(ANIMALS, 4)
        shared = rng.randint(0, 4)
        b = a[:shared] + rng.sample([x for x in ANIMALS if x not in a], 4 - shared)
        rows.append((" ".join(a), " ".join(rng.sample(b, 4)), [shared] * 5))
    return rows


def hallmark_docs(n: int, seed: int) -> list[tuple]:
    """One-sentence documents of three animals and two colours; hallmark j is labelled when ANIMALS[j] is named
    (j < 10, the number of hallmarks)."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        named = rng.sample(ANIMALS, 3)
        labels = sorted(ANIMALS.index(x) for x in named if ANIMALS.index(x) < 10)
        docs.append((" ".join(named + rng.sample(COLOURS, 2)), labels))
    return docs


def make_toy(root: Path) -> dict:
    """Paths of the toy files and of a pretrained (iteration 0) tiny-biomedlm checkpoint that records them."""
    from launch import run_pretrain

    tok = make_tokenizer(root / "tok")
    files = {
        "tok": tok,
        "mc_train": write_jsonl(root / "mc_train.jsonl", mc_items(64, 1)),
        "mc_valid": write_jsonl(root / "mc_valid.jsonl", mc_items(32, 2)),
        "sft": write_jsonl(root / "sft.jsonl", sft_rows(48, 4)),
        "pref": write_jsonl(root / "pref.jsonl", preference_rows(32, 5)),
        "pref_valid": write_jsonl(root / "pref_valid.jsonl", preference_rows(16, 6)),
    }
    (root / "ner.tsv").write_text(ner_conll(24, 7))
    files["ner"] = root / "ner.tsv"
    files["biosses"] = biosses_file(root / "biosses.tsv", similarity_pairs(24, 8))
    files["hoc"] = hoc_file(root / "hoc.jsonl", hallmark_docs(24, 9))
    pqa = root / "pubmedqa.json"
    pqa.write_text(json.dumps(pubmedqa_items(48, 3)))
    files["pubmedqa"] = pqa
    run_pretrain(
        1,
        ["data.mock=true", "train.train_iters=0", "train.eval_iters=0", f"data.tokenizer={tok}",
         f"checkpoint.save={root / 'pretrained'}"],
        root,
    )  # fmt: skip
    files["pretrained"] = root / "pretrained"
    return files


def task_args(toy: dict, task: str) -> list[str]:
    """tools/finetune.py arguments for ``task`` on the toy data, starting from the pretrained checkpoint."""
    data = {
        "mc": ["--train-file", toy["mc_train"], "--valid-file", toy["mc_valid"], "--format", "medqa"],
        "classify": ["--train-file", toy["pubmedqa"], "--format", "pubmedqa"],
        "sft": ["--train-file", toy["sft"], "--format", "sft"],
        "dpo": ["--train-file", toy["pref"], "--format", "preference"],
        "ner": ["--train-file", toy["ner"], "--format", "conll"],
    }[task]
    return ["--task", task, "--init-from", str(toy["pretrained"]), *map(str, data)]
