#!/usr/bin/env python
"""Convert MEDLINE/PubMed XML and PMC JATS XML into cleaned JSONL shards (one per input file).

    python tools/pubmed_to_jsonl.py --input data/pubmed/baseline --input data/pubmed/updatefiles \\
        --output-dir data/pubmed_jsonl --workers 8

Each output line is one record whose ``text`` field (title, abstract, body) is the training text.
Inputs are processed in file-name order, so update files override the baseline: the latest
version of each citation is kept and deleted citations are removed (see
megatron_biomed/data/cleaning/reconcile.py). Reruns skip inputs converted before.
The filter report is printed and written to <output-dir>/cleaning_report.json.

Start-up is fast on purpose: nothing here imports torch or megatron.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("megatron_biomed") is None:  # a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from megatron_biomed.data.cleaning import CleaningConfig, PipelineConfig, expand_inputs, run_pipeline
from megatron_biomed.data.cleaning.config import PHI_AUDIT_MODES
from megatron_biomed.data.cleaning.pipeline import REPORT_NAME
from megatron_biomed.data.readers import BadInputError, formats


def build_parser() -> argparse.ArgumentParser:
    d = CleaningConfig()
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--input", action="append", required=True,
                   help="file, glob or directory (searched recursively); repeat for more")
    p.add_argument("--output-dir", required=True, type=Path)
    p.add_argument("--format", choices=("auto", *formats()), default="auto",
                   help="input format; auto decides per file from its name, first bytes or XML root element "
                        "(default)")
    p.add_argument("--workers", type=int, default=1, help="processes converting files in parallel")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip and count broken files/records instead of stopping at the first one")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    f = p.add_argument_group("filters (each dropped record is counted under one reason in the report)")
    f.add_argument("--drop-no-abstract", action=argparse.BooleanOptionalAction, default=d.drop_no_abstract)
    f.add_argument("--languages", default=",".join(d.languages),
                   help="comma-separated ISO 639-2 codes to keep (MEDLINE <Language>, PMC xml:lang); "
                        "'any' keeps all (default: %(default)s)")
    f.add_argument("--min-words", type=int, default=d.min_words, help="default: %(default)s")
    f.add_argument("--drop-retracted", action=argparse.BooleanOptionalAction, default=d.drop_retracted)
    f.add_argument("--commercial-only", action=argparse.BooleanOptionalAction, default=d.commercial_only,
                   help="PMC: keep only articles whose licence allows commercial use")
    f.add_argument("--dedup-exact", action=argparse.BooleanOptionalAction, default=d.dedup_exact,
                   help="drop repeats of the same normalized text")
    f.add_argument("--dedup-pmid", action=argparse.BooleanOptionalAction, default=d.dedup_pmid,
                   help="one record per PMID: the latest version / later file wins")
    f.add_argument("--near-dup", action=argparse.BooleanOptionalAction, default=d.near_dup,
                   help="MinHash-LSH near-duplicate removal (off by default)")
    f.add_argument("--near-dup-threshold", type=float, default=d.near_dup_threshold)
    f.add_argument("--near-dup-num-perm", type=int, default=d.near_dup_num_perm)
    f.add_argument("--near-dup-shingle", type=int, default=d.near_dup_shingle)
    f.add_argument("--keep-captions", action=argparse.BooleanOptionalAction, default=d.keep_captions,
                   help="PMC: keep figure and table captions")
    f.add_argument("--phi-audit", choices=PHI_AUDIT_MODES, default=d.phi_audit,
                   help="clinical notes: identifier-like patterns (phone, e-mail, SSN, MRN, full date, URL) are "
                        "counted per kind under 'flagged' (flag), dropped as phi_<kind> (drop) or not looked for "
                        "(off); matched text is never shown (default: %(default)s)")
    f.add_argument("--deid-token", default=d.deid_token,
                   help="clinical notes: what de-identification placeholders ([** ... **], ___) become; '' keeps "
                        "them (default: %(default)s)")
    f.add_argument("--drop-withdrawn", action=argparse.BooleanOptionalAction, default=d.drop_withdrawn,
                   help="ClinicalTrials.gov: drop withdrawn studies (never enrolled a participant)")
    f.add_argument("--patent-classes", default=",".join(d.patent_classes),
                   help="USPTO: comma-separated IPC/CPC prefixes to keep, e.g. A61K,A61P,C07,C12 for a biomedical "
                        "subset (default: every class)")
    f.add_argument("--patent-designs", action=argparse.BooleanOptionalAction, default=d.patent_designs,
                   help="USPTO: keep design patents (kind S); dropped as patent_design by default")
    return p


def config_from_args(args: argparse.Namespace) -> CleaningConfig:
    langs = tuple(x.strip() for x in args.languages.split(",") if x.strip())
    if langs in ((), ("any",)):
        langs = ()
    return CleaningConfig(
        drop_no_abstract=args.drop_no_abstract,
        languages=langs,
        min_words=args.min_words,
        drop_retracted=args.drop_retracted,
        commercial_only=args.commercial_only,
        dedup_exact=args.dedup_exact,
        dedup_pmid=args.dedup_pmid,
        near_dup=args.near_dup,
        near_dup_threshold=args.near_dup_threshold,
        near_dup_num_perm=args.near_dup_num_perm,
        near_dup_shingle=args.near_dup_shingle,
        keep_captions=args.keep_captions,
        phi_audit=args.phi_audit,
        deid_token=args.deid_token,
        drop_withdrawn=args.drop_withdrawn,
        patent_classes=tuple(x.strip() for x in args.patent_classes.split(",") if x.strip()),
        patent_designs=args.patent_designs,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
        pipe = PipelineConfig(args.output_dir, args.format, args.workers, args.skip_bad, args.progress)
        inputs = expand_inputs(args.input)
        report = run_pipeline(inputs, pipe, cfg)
    except BadInputError as e:
        print(
            f"error: {e.path}:{e.line}: {e.problem}\n"
            "Nothing was written for this file and no output shard was updated. Repair or "
            "re-download it, or rerun with --skip-bad to skip broken files and count them.",
            file=sys.stderr,
        )
        return 2
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report.format())
    print(f"wrote {len(inputs)} shard(s) and {REPORT_NAME} to {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
