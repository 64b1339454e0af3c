#!/usr/bin/env python
"""Train a Punkt sentence-splitting model (nltk's PunktTrainer) for --split-sentences.

    # on your own corpus (JSONL), saved as JSON parameters
    python tools/train_punkt.py --input data/pubmed/*.jsonl --json-keys text --output punkt_pubmed.json
    # the bundled default (synthetic PubMed-style text of our own), written to its cache
    python tools/train_punkt.py --bundled

Use the result with ``tools/preprocess_data.py --split-sentences --punkt-model punkt_pubmed.json``.
A list of biomedical abbreviations (et al., i.v., approx., ...) is always added unless
--no-extra-abbreviations.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from megatron_biomed.data.indexed.sentences import (
    BIOMEDICAL_ABBREVIATIONS,
    bundled_model_path,
    bundled_params,
    save_params,
    train_punkt,
)
from megatron_biomed.data.jsonl import (
    BadRecordError,
    BadRecordReport,
    JsonlReadConfig,
    expand_inputs,
    iter_texts,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", nargs="+", help="JSONL files, globs or directories")
    p.add_argument("--json-keys", nargs="+", default=["text"])
    p.add_argument("--output", help="where to save (.json: JSON parameters; else a pickle)")
    p.add_argument("--max-documents", type=int, default=None, help="train on the first N texts")
    p.add_argument("--skip-bad", action="store_true", help="skip and count bad JSONL records")
    p.add_argument("--no-extra-abbreviations", action="store_true",
                   help="do not add the built-in biomedical abbreviation list")
    p.add_argument("--bundled", action="store_true",
                   help="(re)build the default model from the bundled synthetic abstracts")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.bundled:
        path = bundled_model_path()
        path.unlink(missing_ok=True)
        params = bundled_params()
        if args.output:
            save_params(params, args.output)
        print(f"bundled biomedical Punkt model: {len(params.abbrev_types)} abbreviations -> "
              f"{args.output or path}")
        return 0
    if not args.input or not args.output:
        print("error: give --input and --output (or --bundled)", file=sys.stderr)
        return 2
    report = BadRecordReport()
    texts = iter_texts(expand_inputs(args.input),
                       JsonlReadConfig(json_keys=tuple(args.json_keys), skip_bad=args.skip_bad), report)
    if args.max_documents:
        texts = itertools.islice(texts, args.max_documents)
    extra = () if args.no_extra_abbreviations else BIOMEDICAL_ABBREVIATIONS
    try:
        params = train_punkt(texts, extra)
    except BadRecordError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    save_params(params, args.output)
    print(f"trained Punkt: {len(params.abbrev_types)} abbreviations, {len(params.collocations)} "
          f"collocations, {len(params.sent_starters)} sentence starters -> {args.output} "
          f"({report.summary()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
