#!/usr/bin/env python
"""Write the quickstart's synthetic multiple-choice task: train.jsonl and valid.jsonl in MedQA's schema.

    python tools/make_sample_tasks.py --output-dir runs/quickstart/tasks --num-train 2000 --num-valid 200

Each row is ``{"question", "options": {"A".."D"}, "answer_idx", "answer"}``. Every question and option is
made up here from word lists of our own (nothing is taken from MedQA or any other dataset). The task is
learnable from content alone: each question asks for one kind of thing (a treatment, a gene, an outcome
measure or a laboratory model) and offers one phrase of each kind in a random order, so no option is right
by its position or by its own words: a fine-tuned model that beats 25% has matched the option to the
question. The words are those of the quickstart's synthetic PubMed sample (tools/make_sample_pubmed.py), so
its tokenizer knows them. The same seed gives the same bytes.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

LETTERS = "ABCD"

DISEASES = [
    "type 2 diabetes", "chronic kidney disease", "heart failure", "asthma", "rheumatoid arthritis",
    "major depressive disorder", "sepsis", "tuberculosis", "psoriasis", "atrial fibrillation",
    "multiple sclerosis", "colorectal cancer", "osteoporosis", "migraine", "malaria",
]
POPULATIONS = ["adults over 65 years", "pregnant women", "outpatients", "primary care patients", "children"]

# Four kinds of phrase; every question asks for one kind and offers one phrase of each kind.
KINDS = {
    "treatment": [
        "metformin", "a low-sodium diet", "supervised exercise training", "inhaled corticosteroids",
        "an anti-TNF antibody", "cognitive behavioural therapy", "early goal-directed fluid therapy",
        "a four-drug regimen", "stereotactic radiotherapy", "a topical vitamin D analogue", "catheter ablation",
        "an oral kinase inhibitor", "pulmonary rehabilitation", "a single-dose vaccine", "bisphosphonate therapy",
    ],
    "gene": ["TP53", "BRCA1", "EGFR", "APOE", "IL6", "TNF", "HLA-B", "CFTR", "KRAS", "MTHFR", "VEGFA", "ACE2"],
    "measure": [
        "glycated haemoglobin", "estimated glomerular filtration rate", "left ventricular ejection fraction",
        "forced expiratory volume", "depressive symptom score", "28-day mortality", "progression-free survival",
        "lesion area", "bone mineral density", "headache days per month", "serum interleukin-6",
        "length of hospital stay",
    ],
    "model": ["a mouse model", "a zebrafish model", "a rat model", "human organoids", "primary fibroblasts",
              "induced pluripotent stem cells"],
}
QUESTIONS = {
    "treatment": [
        "Which of the following is a treatment for {disease}?",
        "Which intervention was given to {population} with {disease} in the treatment arm?",
    ],
    "gene": [
        "Variants of which gene were associated with {disease}?",
        "Which gene was deleted to study {disease}?",
    ],
    "measure": [
        "Which outcome was measured in a trial of {population} with {disease}?",
        "What was the primary outcome of the study of {disease}?",
    ],
    "model": [
        "Which laboratory model was used to study {disease}?",
        "In which experimental system was {disease} modelled?",
    ],
}


def items(n: int, rng: random.Random) -> list[dict]:
    """``n`` MedQA-schema rows; the kind asked for and the answer's letter are uniform."""
    rows = []
    for _ in range(n):
        kind = rng.choice(sorted(KINDS))
        question = rng.choice(QUESTIONS[kind]).format(disease=rng.choice(DISEASES),
                                                      population=rng.choice(POPULATIONS))  # fmt: skip
        options = [rng.choice(KINDS[k]) for k in sorted(KINDS)]
        rng.shuffle(options)
        answer = next(o for o in options if o in KINDS[kind])
        rows.append({
            "question": question,
            "options": dict(zip(LETTERS, options)),
            "answer_idx": LETTERS[options.index(answer)],
            "answer": answer,
        })  # fmt: skip
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output-dir", type=Path, required=True, help="writes train.jsonl and valid.jsonl here")
    p.add_argument("--num-train", type=int, default=2000)
    p.add_argument("--num-valid", type=int, default=200)
    p.add_argument("--seed", type=int, default=1234)
    args = p.parse_args(argv)
    rng = random.Random(args.seed)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    for name, n in (("train", args.num_train), ("valid", args.num_valid)):
        write_jsonl(args.output_dir / f"{name}.jsonl", items(n, rng))
        print(f"wrote {n} synthetic multiple-choice questions to {args.output_dir / f'{name}.jsonl'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
