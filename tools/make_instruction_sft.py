#!/usr/bin/env python
"""Write BioMamba's instruction SFT data (train.jsonl, valid.jsonl in task.format=sft) from PubMedQA and BioASQ.

    python tools/make_instruction_sft.py --pubmedqa data/pubmedqa/ori_pqal.json \
        --bioasq data/bioasq/training13b.json --output-dir data/biomamba_sft

PubMedQA (the ori_pqal.json layout) is split into train / valid; BioASQ yes/no questions (golden JSON or JSONL)
are mixed into train only. Splits, ratio, seed and the instruction template are BioMamba's
(megatron_biomed/finetune/instructions.py); each row is {"id", "prompt", "response"}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from megatron_biomed.data.tasks import ReadReport, TaskDataError, format_report, read_task_file
from megatron_biomed.finetune.instructions import InstructionMix, instruction_splits
from megatron_biomed.finetune.prompts import PromptError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    d = InstructionMix()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pubmedqa", required=True, help="PubMedQA PQA-L file (ori_pqal.json layout)")
    p.add_argument("--bioasq", help="BioASQ golden JSON / JSONL: its yes/no questions are mixed into train")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--valid-fraction", type=float, default=d.valid_fraction)
    p.add_argument("--mix-ratio", type=float, default=d.mix_ratio, help="BioASQ's share of the training part")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--template", default=d.template)
    p.add_argument("--skip-bad", action="store_true", help="skip bad records (counted) instead of stopping")
    return p.parse_args(argv)


def _read(path: str, fmt: str, skip_bad: bool) -> list:
    report = ReadReport(path)
    items = read_task_file(path, fmt, skip_bad=skip_bad, report=report)
    print(format_report(report))
    return items


def _write(path: Path, examples) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        for ex in examples:
            (_, prompt), (_, response) = ex.messages
            f.write(json.dumps({"id": ex.uid, "prompt": prompt, "response": response}) + "\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    mix = InstructionMix(args.valid_fraction, args.mix_ratio, args.seed, args.template)
    try:
        primary = _read(args.pubmedqa, "pubmedqa", args.skip_bad)
        extra = _read(args.bioasq, "bioasq", args.skip_bad) if args.bioasq else []
        train, valid = instruction_splits(primary, "pubmedqa", extra, "bioasq", mix)
    except (TaskDataError, PromptError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write(out / "train.jsonl", train)
    _write(out / "valid.jsonl", valid)
    print(f"wrote {len(train)} train ({len(train) - (len(primary) - len(valid))} BioASQ) and {len(valid)} valid "
          f"examples to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
