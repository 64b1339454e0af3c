#!/usr/bin/env python
"""Train a byte-level BPE tokenizer on JSONL text (defaults: BioMedLM's 28,896 tokens, min frequency 2).

    python tools/train_tokenizer.py --input data/*.jsonl --json-keys text \
        --vocab-size 28896 --min-frequency 2 --output-dir tokenizers/pubmed-28896

BioMedLM's published layout (<|endoftext|> the last id, offsets trimmed) is
``--special-tokens-position last --trim-offsets``, as examples/biomedlm/train_tokenizer.sh passes; the default
(``first``, untrimmed) keeps this project's earlier layout (<|endoftext|> = 0).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from megatron_biomed.data.jsonl import (
    DEFAULT_MAX_DOCUMENT_BYTES,
    BadRecordError,
    BadRecordReport,
    JsonlReadConfig,
    expand_inputs,
    iter_texts,
)
from megatron_biomed.tokenizer.train import (
    BIOMEDLM_VOCAB_SIZE,
    SPECIAL_TOKENS_POSITIONS,
    TokenizerTrainConfig,
    train_bpe_tokenizer,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", nargs="+", required=True, help="JSONL files, globs or directories")
    p.add_argument("--json-keys", nargs="+", default=["text"], help="keys whose text is trained on")
    p.add_argument("--vocab-size", type=int, default=BIOMEDLM_VOCAB_SIZE)
    p.add_argument("--min-frequency", type=int, default=2)
    p.add_argument("--special-tokens-position", choices=SPECIAL_TOKENS_POSITIONS, default="first",
                   help="special tokens' ids before the learned tokens (first: <|endoftext|> = 0) or after them "
                        "(last: <|endoftext|> = vocab size - 1, BioMedLM's published layout)")
    p.add_argument("--trim-offsets", action=argparse.BooleanOptionalAction, default=False,
                   help="leave a token's leading space out of its character offsets (BioMedLM's train_bpe.py)")
    p.add_argument("--output-dir", required=True, help="Hugging Face tokenizer directory to write")
    p.add_argument("--max-document-bytes", type=int, default=DEFAULT_MAX_DOCUMENT_BYTES)
    p.add_argument("--skip-bad", action="store_true", help="skip and count bad JSONL records")
    p.add_argument("--progress", action="store_true", help="show the trainer's progress bar")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    files = expand_inputs(args.input)
    read_cfg = JsonlReadConfig(json_keys=tuple(args.json_keys),
                               max_document_bytes=args.max_document_bytes, skip_bad=args.skip_bad)
    train_cfg = TokenizerTrainConfig(vocab_size=args.vocab_size, min_frequency=args.min_frequency,
                                     show_progress=args.progress,
                                     special_tokens_position=args.special_tokens_position,
                                     trim_offsets=args.trim_offsets)
    report = BadRecordReport()
    t0 = time.time()
    try:
        tok = train_bpe_tokenizer(iter_texts(files, read_cfg, report), train_cfg, args.output_dir)
    except BadRecordError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"trained {tok.vocab_size}-token BPE on {len(files)} file(s) in {time.time() - t0:.1f}s "
          f"-> {args.output_dir} (eod id {tok.eod}, special_tokens_position {args.special_tokens_position}, "
          f"trim_offsets {args.trim_offsets}; {report.summary()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
