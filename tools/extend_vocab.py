#!/usr/bin/env python
"""Add the N most frequent domain words that a base tokenizer fragments (>= 3 pieces) as tokens.

    python tools/extend_vocab.py --base-tokenizer tokenizers/gpt2 --input data/pubmed/*.jsonl \
        --json-keys text --top-n 2000 --output-dir tokenizers/gpt2-pubmed

Or add the tokens a fine-tuning input format needs (BioMedLM's ``[PAD]``/``[CLS]``/``[SEP]`` for multiple
choice, ``[PAD]`` and ``<|CONTEXT|>``... for PubMedQA / BioASQ) as added tokens:

    python tools/extend_vocab.py --base-tokenizer tokenizers/biomedlm --input-format biomedlm-mc \
        --output-dir tokenizers/biomedlm-mc
    python tools/extend_vocab.py --base-tokenizer tokenizers/biomedlm --special-tokens "[PAD]" "[SEP]" ...

Writes the extended Hugging Face tokenizer directory plus ``new_token_pieces.json``
({new id: [base ids it replaces]}; initialise each new embedding row as their mean) and
``extend_vocab_summary.json`` (the words, their counts and pieces). ``tools/convert_hf.py import
--extend-vocab DIR`` then grows a checkpoint's embedding to match.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from megatron_biomed.data.jsonl import (
    BadRecordError,
    BadRecordReport,
    JsonlReadConfig,
    expand_inputs,
    iter_texts,
)
from megatron_biomed.finetune.formats import INPUT_FORMATS, input_format
from megatron_biomed.tokenizer import load_tokenizer
from megatron_biomed.tokenizer.extend import (
    ExtendVocabConfig,
    add_special_tokens,
    extend_tokenizer,
    mine_fragmented_words,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base-tokenizer", required=True, help="Hugging Face tokenizer directory")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--input", nargs="+", help="domain JSONL files, globs or directories (mine words)")
    what.add_argument("--special-tokens", nargs="+", metavar="TOKEN", help="add these tokens (added tokens)")
    what.add_argument("--input-format", choices=INPUT_FORMATS.names(),
                      help="add the tokens this fine-tuning input format needs (task.input_format)")
    p.add_argument("--json-keys", nargs="+", default=["text"])
    p.add_argument("--output-dir", required=True)
    p.add_argument("--top-n", type=int, default=2000, help="how many words to add")
    p.add_argument("--min-pieces", type=int, default=3, help="only words split into at least this many tokens")
    p.add_argument("--min-count", type=int, default=2, help="only words seen at least this often")
    p.add_argument("--max-documents", type=int, default=None, help="mine only the first N texts")
    p.add_argument("--skip-bad", action="store_true", help="skip and count bad JSONL records")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    base = load_tokenizer(args.base_tokenizer)
    if args.special_tokens or args.input_format:
        tokens = args.special_tokens or input_format(args.input_format).added_tokens
        pieces = add_special_tokens(args.base_tokenizer, tokens, args.output_dir)
        ext = load_tokenizer(args.output_dir)
        print(f"added {len(pieces)} tokens: vocab {base.vocab_size:,} -> {ext.vocab_size:,}")
        for token in tokens:
            print(f"  {token!r}: id {ext.token_to_id(token)}")
        print(f"wrote {args.output_dir} (tokenizer + new_token_pieces.json)")
        return 0
    cfg = ExtendVocabConfig(top_n=args.top_n, min_pieces=args.min_pieces, min_count=args.min_count)
    report = BadRecordReport()
    texts = iter_texts(expand_inputs(args.input),
                       JsonlReadConfig(json_keys=tuple(args.json_keys), skip_bad=args.skip_bad), report)
    if args.max_documents:
        texts = itertools.islice(texts, args.max_documents)
    try:
        words = mine_fragmented_words(base.hf_tokenizer, texts, cfg)
    except BadRecordError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if len(words) < cfg.top_n:
        print(f"note: only {len(words)} words qualify (asked for {cfg.top_n})", file=sys.stderr)
    pieces = extend_tokenizer(args.base_tokenizer, words, args.output_dir)
    ext = load_tokenizer(args.output_dir)
    print(f"added {len(pieces)} tokens: vocab {base.vocab_size:,} -> {ext.vocab_size:,} ({report.summary()})")
    for w in words[:10]:
        print(f"  {w.text.strip()!r}: {w.count} uses, was {len(w.pieces)} pieces")
    print(f"wrote {args.output_dir} (tokenizer + new_token_pieces.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
