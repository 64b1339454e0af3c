#!/usr/bin/env python
"""Tokenize JSONL into megatron ``.bin``/``.idx`` datasets (Megatron-LM's flags and file names).

    python tools/preprocess_data.py --input data/*.jsonl --json-keys text \
        --tokenizer tokenizers/pubmed-28896 --output-prefix data/pubmed --workers 2 --append-eod

writes ``data/pubmed_text_document.bin/.idx`` (``_sentence`` with --split-sentences). Uses
gigatoken when installed (identical ids, much faster), else Hugging Face tokenizers. Never
imports torch.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from megatron_biomed.data.indexed.preprocess import (
    PreprocessConfig,
    PreprocessError,
    preprocess,
)
from megatron_biomed.data.jsonl import DEFAULT_MAX_DOCUMENT_BYTES


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("input")
    g.add_argument("--input", nargs="+", required=True, help="JSONL files, globs or directories")
    g.add_argument("--json-keys", nargs="+", default=["text"], help="keys to tokenize, one output each")
    g.add_argument("--split-sentences", action="store_true",
                   help="one sequence per sentence (Punkt; biomedical model by default)")
    g.add_argument("--punkt-model", default="auto",
                   help="Punkt parameters: a .json/.pickle from tools/train_punkt.py, 'nltk' for "
                        "NLTK_DATA's English punkt, or 'auto' (NLTK_DATA's if set, else bundled biomedical)")
    g.add_argument("--keep-newlines", action="store_true", help="keep newlines between sentences")
    g.add_argument("--skip-bad", action="store_true",
                   help="skip and count bad records instead of stopping at the first one")
    g.add_argument("--max-document-bytes", type=int, default=DEFAULT_MAX_DOCUMENT_BYTES,
                   help="records longer than this are bad input")
    g = p.add_argument_group("tokenizer")
    g.add_argument("--tokenizer", "--tokenizer-model", dest="tokenizer", required=True,
                   help="Hugging Face tokenizer directory (or GPT-2 vocab.json + merges.txt)")
    g.add_argument("--tokenizer-backend", default="auto", choices=["auto", "gigatoken", "hf"])
    g.add_argument("--append-eod", action="store_true", help="end every document with <|endoftext|>")
    g = p.add_argument_group("output")
    g.add_argument("--output-prefix", required=True)
    g.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = PreprocessConfig(
        input=args.input, tokenizer=args.tokenizer, output_prefix=args.output_prefix,
        json_keys=tuple(args.json_keys), workers=args.workers, append_eod=args.append_eod,
        split_sentences=args.split_sentences, punkt_model=args.punkt_model,
        keep_newlines=args.keep_newlines, skip_bad=args.skip_bad,
        max_document_bytes=args.max_document_bytes, tokenizer_backend=args.tokenizer_backend,
        progress=not args.no_progress,
    )
    try:
        stats = preprocess(cfg)
    except (PreprocessError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}\nno output written for {args.output_prefix}", file=sys.stderr)
        return 1
    print(f"preprocess: {stats.summary()}")
    for out in stats.outputs:
        print(f"wrote {out}.bin / {out}.idx")
    return 0


if __name__ == "__main__":
    sys.exit(main())
