#!/usr/bin/env python
"""Merge megatron ``.bin``/``.idx`` shards into one dataset (same bytes as building it in one go).

    python tools/merge_datasets.py --input data/shard0_text_document data/shard1_text_document \
        --output-prefix data/all_text_document
    python tools/merge_datasets.py --input-dir data/shards --output-prefix data/all_text_document

Shards are taken in the order given (``--input-dir``: sorted by name).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from megatron_biomed.data.indexed.merge import merge_datasets


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", nargs="+", help="shard prefixes (without .bin/.idx)")
    src.add_argument("--input-dir", help="merge every <prefix>.idx/.bin pair in this directory")
    p.add_argument("--output-prefix", required=True)
    return p.parse_args(argv)


def shard_prefixes(args: argparse.Namespace) -> list[str]:
    if args.input:
        prefixes = [p[:-4] if p.endswith((".bin", ".idx")) else p for p in args.input]
    else:
        prefixes = [str(p.with_suffix("")) for p in sorted(Path(args.input_dir).glob("*.idx"))]
        if not prefixes:
            raise FileNotFoundError(f"--input-dir {args.input_dir}: no .idx files")
    for p in prefixes:
        for ext in (".bin", ".idx"):
            if not Path(p + ext).is_file():
                raise FileNotFoundError(f"shard {p}: missing {p}{ext}")
    return prefixes


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        prefixes = shard_prefixes(args)
        docs, seqs = merge_datasets(prefixes, args.output_prefix)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"merged {len(prefixes)} shard(s): {docs:,} documents, {seqs:,} sequences -> "
          f"{args.output_prefix}.bin/.idx")
    return 0


if __name__ == "__main__":
    sys.exit(main())
