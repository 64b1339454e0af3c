#!/usr/bin/env python
"""Write SFT data (task.format=sft JSONL rows {"id", "prompt", "response"}) for the generation tasks of
tools/evaluate.py: BioGPT's generative relation extraction (bc5cdr_re, kd_dti_re, ddi_re: the lower-cased
document as prompt, its target sentence as response) and MeQSum question summarisation (meqsum).

    python tools/make_generative_sft.py --format bc5cdr_re \\
        --input ../shared/data/pubmed_abstracts/bc5cdr/CDR_TrainingSet.PubTator.txt --output data/bc5cdr_re/train.jsonl
    python tools/make_generative_sft.py --format meqsum --input ../shared/data/meqsum/meqsum_1000.jsonl \\
        --output data/meqsum/train.jsonl

Fine-tune with ``tools/finetune.py --task sft --set task.train_file=... --set task.format=sft`` (the plain chat
template, which the generation tasks' prompts use too), then score with ``tools/evaluate.py --benchmark
bc5cdr_re=CDR_DevelopmentSet.PubTator.txt``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from megatron_biomed.data.tasks import ReadReport, TaskDataError, format_report
from megatron_biomed.data.tasks.relation_text import TEMPLATES
from megatron_biomed.eval.generation import sft_pairs

FORMATS = (*TEMPLATES, "meqsum")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--format", required=True, choices=FORMATS, help="the input files' corpus")
    p.add_argument("--input", action="append", required=True, help="input file (repeatable: rows concatenated)")
    p.add_argument("--output", required=True, help="SFT JSONL to write")
    p.add_argument("--skip-bad", action="store_true", help="skip bad records (counted) instead of stopping")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rows = []
    try:
        for path in args.input:
            report = ReadReport(path)
            rows += sft_pairs(args.format, path, skip_bad=args.skip_bad, report=report)
            print(format_report(report))
    except TaskDataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w") as f:
        for uid, prompt, response in rows:
            f.write(json.dumps({"id": uid, "prompt": prompt, "response": response}) + "\n")
    os.replace(tmp, out)
    print(f"wrote {len(rows)} {args.format} examples to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
