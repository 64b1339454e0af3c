#!/usr/bin/env python
"""Download PubMed baseline/update files and PMC open-access packages, verified by MD5.

    python tools/download_pubmed.py --source pubmed-baseline --source pubmed-updates \\
        --output-dir data/pubmed --workers 4

Each source goes to <output-dir>/<source>/. Reruns skip files verified before; a file is only
visible under its own name once its checksum matched (it downloads as <name>.part). Exits with
status 1 when any file still failed after --retries.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("megatron_biomed") is None:  # a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from megatron_biomed.data.download import DEFAULT_BASE_URL, SOURCES, DownloadConfig, download_source


def build_parser() -> argparse.ArgumentParser:
    d = DownloadConfig(output_dir=Path("."))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", action="append", choices=sorted(SOURCES),
                   help="what to fetch; repeat for more (default: pubmed-baseline)")
    p.add_argument("--output-dir", type=Path, required=True)
    p.add_argument("--base-url", default=DEFAULT_BASE_URL, help="server root (default: %(default)s)")
    p.add_argument("--workers", type=int, default=d.workers, help="parallel downloads (default: %(default)s)")
    p.add_argument("--retries", type=int, default=d.retries, help="extra attempts per file (default: %(default)s)")
    p.add_argument("--backoff-s", type=float, default=d.backoff_s, help="seconds; retry k waits k times this")
    p.add_argument("--timeout-s", type=float, default=d.timeout_s)
    p.add_argument("--limit", type=int, default=None, help="only the first N files of each source")
    p.add_argument("--include", default=None, help="only file names matching this regular expression")
    p.add_argument("--verify-existing", action="store_true",
                   help="re-hash files verified by an earlier run instead of trusting their .md5 record")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    failed = 0
    for name in args.source or ["pubmed-baseline"]:
        try:
            cfg = DownloadConfig(
                output_dir=args.output_dir / name, base_url=args.base_url, workers=args.workers,
                retries=args.retries, backoff_s=args.backoff_s, timeout_s=args.timeout_s, limit=args.limit,
                include=args.include, verify_existing=args.verify_existing, progress=args.progress,
            )
            report = download_source(SOURCES[name], cfg, desc=name)
        except (ValueError, ConnectionError) as e:
            print(f"error: {name}: {e}", file=sys.stderr)
            return 2
        print(f"{name}: {report.format()}")
        failed += len(report.failed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
