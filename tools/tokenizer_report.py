#!/usr/bin/env python
"""Compare how tokenizers fragment held-out text and biomedical terms (side by side).

    python tools/tokenizer_report.py --tokenizers tokenizers/gpt2 tokenizers/pubmed-28896 \
        --input heldout.jsonl --json-keys text [--terms my_terms.txt] [--max-documents 2000]

Prints tokens per word and per document, and how each term (the built-in list, plus one term per
line of --terms) is split by each tokenizer. --json-output also saves the numbers.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from megatron_biomed.data.jsonl import (
    BadRecordError,
    JsonlReadConfig,
    expand_inputs,
    iter_texts,
)
from megatron_biomed.tokenizer import load_tokenizer
from megatron_biomed.tokenizer.report import DEFAULT_TERMS, build_report, format_report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokenizers", nargs="+", required=True, help="tokenizer directories to compare")
    p.add_argument("--input", nargs="+", required=True, help="held-out JSONL files, globs or directories")
    p.add_argument("--json-keys", nargs="+", default=["text"])
    p.add_argument("--terms", help="file with one extra term per line")
    p.add_argument("--no-default-terms", action="store_true", help="only the --terms file's terms")
    p.add_argument("--max-documents", type=int, default=5000)
    p.add_argument("--skip-bad", action="store_true", help="skip bad JSONL records")
    p.add_argument("--json-output", help="also write the report as JSON here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    terms = [] if args.no_default_terms else list(DEFAULT_TERMS)
    if args.terms:
        lines = Path(args.terms).read_text(encoding="utf-8").splitlines()
        terms += [t.strip() for t in lines if t.strip() and not t.startswith("#") and t.strip() not in terms]
    cfg = JsonlReadConfig(json_keys=tuple(args.json_keys), skip_bad=args.skip_bad)
    try:
        texts = list(itertools.islice(iter_texts(expand_inputs(args.input), cfg), args.max_documents))
    except BadRecordError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    names = [Path(t).name or str(t) for t in args.tokenizers]
    if len(set(names)) < len(names):
        names = [str(t) for t in args.tokenizers]
    reports = [build_report(n, load_tokenizer(t), texts, terms) for n, t in zip(names, args.tokenizers)]
    print(format_report(reports))
    if args.json_output:
        out = [{**asdict(r), "tokens_per_word": r.stats.tokens_per_word,
                "tokens_per_document": r.stats.tokens_per_document} for r in reports]
        Path(args.json_output).write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
