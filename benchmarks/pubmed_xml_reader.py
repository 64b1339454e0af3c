"""Benchmark our PubMed/MEDLINE XML reader against pubmed-parser (P1b: one process, <= 0.5x its time).

Input: one gzip-compressed ``PubmedArticleSet`` file generated in a temp dir from the real NLM
samples in ``shared/data/pubmed_xml/`` (see its SOURCE.md): every ``<PubmedArticle>`` of the
current-DTD files, plus the 604 ``<MedlineCitation>`` records of the 2016 baseline file each
wrapped in a ``<PubmedArticle>`` (pubmed-parser reads only ``PubmedArticle``), repeated in order
until ``--articles`` articles. Same bytes for every contender; gzip because NLM ships
``.xml.gz`` and pubmed-parser opens its input with ``gzip.open``.

Contenders, all in this one process, each run ``--rounds`` times interleaved (A B C A B C ...,
so load from other processes on the machine hits each side alike), best-of-N wall time, and
best-of-N CPU time of the process (steadier than wall time on a shared machine):

  pubmed-parser   ``pubmed_parser.parse_medline_xml(path)`` with its defaults, records consumed.
                  Extracts per article: pmid, title, abstract (NLM labels), journal, pubdate (year),
                  authors + affiliations + ORCIDs, mesh_terms, publication_types, chemical_list,
                  keywords, doi, references, languages, vernacular_title, other ids, journal info
                  (country, MedlineTA, NLM id, ISSN), grant ids.
  ours: reader    ``iter_medline(path)``, records consumed. Extracts: pmid, version, title,
                  abstract (labelled sections, one per line), journal, year, languages, mesh_terms,
                  publication_types, doi, and the training ``text``; deletions; bad records.
  ours: step 1    ``convert.convert_file`` (what ``tools/pubmed_to_jsonl.py`` runs per file): the
                  reader, ``to_dict``, the default filters (English, has abstract, not retracted,
                  >= 20 words), ``json.dumps`` of each kept record to the JSONL shard, the
                  reconcile event list and the summary JSON.
  lxml floor      for reference only: ``iterparse(tag=PubmedArticle)`` + freeing each element,
                  no extraction (what any lxml reader pays for decompression + parsing).

Fields differ (pubmed-parser extracts authors, grants, references, ...; we extract what training
and cleaning need), so the ratio compares two readers of the same files for their own jobs.

    python benchmarks/pubmed_xml_reader.py [--articles 30000] [--rounds 5] [--keep DIR]

pubmed-parser is a benchmark-only dependency: ``pip install pubmed_parser``.
"""

from __future__ import annotations

import argparse
import gzip
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from lxml import etree

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from megatron_biomed.data.cleaning.config import CleaningConfig  # noqa: E402
from megatron_biomed.data.cleaning.convert import convert_file  # noqa: E402
from megatron_biomed.data.readers import MedlineRecord, iter_medline  # noqa: E402
from megatron_biomed.data.readers.xmlstream import iter_elements, release  # noqa: E402
from megatron_biomed.data.sharding import ShardTask  # noqa: E402

SAMPLES = ROOT.parent / "shared" / "data" / "pubmed_xml"
MEDLINE_2016 = SAMPLES / "medline_baseline_2016" / "medline16n0902.xml"


def _import_pubmed_parser():
    try:
        import pubmed_parser  # benchmark-only baseline, not a runtime dependency
    except ImportError:
        sys.exit("pubmed-parser is the baseline of this benchmark: pip install pubmed_parser")
    return pubmed_parser


def sample_articles(pp) -> tuple[list[bytes], int]:
    """Serialized ``<PubmedArticle>`` elements from the shared samples, and how many pubmed-parser could not read."""
    parser = etree.XMLParser(load_dtd=False, no_network=True, resolve_entities=False, remove_comments=True)
    articles: list[bytes] = []
    for path in sorted(SAMPLES.rglob("*.xml")):
        root = etree.parse(str(path), parser).getroot()
        if path == MEDLINE_2016:
            for citation in root.iter("MedlineCitation"):
                wrapped = etree.Element("PubmedArticle")
                wrapped.append(citation)
                articles.append(etree.tostring(wrapped, encoding="utf-8"))
        else:
            articles += [etree.tostring(a, encoding="utf-8", with_tail=False) for a in root.iter("PubmedArticle")]
    readable, failed = [], 0
    for blob in articles:  # keep the articles the baseline reads without raising, so both sides read the same
        try:
            pp.medline_parser.parse_article_info(etree.fromstring(blob), True, False, False, False)
            readable.append(blob)
        except Exception:
            failed += 1
    return readable, failed


def write_input(path: Path, articles: list[bytes], n: int) -> None:
    with gzip.open(path, "wb", compresslevel=6) as f:
        f.write(b'<?xml version="1.0" encoding="UTF-8"?>\n<PubmedArticleSet>\n')
        for i in range(n):
            f.write(articles[i % len(articles)])
            f.write(b"\n")
        f.write(b"</PubmedArticleSet>\n")


def run_pubmed_parser(pp, path: Path) -> int:
    return sum(1 for _ in pp.parse_medline_xml(str(path)))


def run_reader(path: Path) -> int:
    return sum(1 for item in iter_medline(path) if isinstance(item, MedlineRecord))


def run_step1(path: Path, stage_dir: Path) -> int:
    meta = convert_file(ShardTask(0, path, "bench"), stage_dir=stage_dir, fmt="medline", cfg=CleaningConfig(),
                        skip_bad=False, digest="bench")
    return meta["records_read"]


def run_floor(path: Path) -> int:
    n = 0
    for _event, el in iter_elements(path, ("PubmedArticle",)):
        n += 1
        release(el)
    return n


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--articles", type=int, default=30000, help="articles in the generated file (a 2021 baseline "
                    "file holds ~30,000)")
    ap.add_argument("--rounds", type=int, default=5, help="timed runs per contender (best-of-N reported)")
    ap.add_argument("--keep", type=Path, help="write the generated input here and keep it")
    args = ap.parse_args(argv)
    pp = _import_pubmed_parser()
    if not SAMPLES.exists():
        sys.exit(f"shared samples not found at {SAMPLES} (see shared/data/pubmed_xml/SOURCE.md)")

    with tempfile.TemporaryDirectory() as td:
        workdir = args.keep or Path(td)
        workdir.mkdir(parents=True, exist_ok=True)
        src = workdir / "pubmed_bench.xml.gz"
        articles, failed = sample_articles(pp)
        write_input(src, articles, args.articles)
        raw = sum(len(articles[i % len(articles)]) for i in range(args.articles))
        print(f"input: {src} - {args.articles} PubmedArticle ({len(articles)} distinct from the shared samples, "
              f"{failed} left out because pubmed-parser raises on them), {raw / 1e6:.1f} MB XML, "
              f"{src.stat().st_size / 1e6:.1f} MB gzip")
        stage = workdir / "stage"
        stage.mkdir(exist_ok=True)
        contenders = {
            "pubmed-parser": lambda: run_pubmed_parser(pp, src),
            "ours: reader": lambda: run_reader(src),
            "ours: step 1 (reader+filters+JSONL)": lambda: run_step1(src, stage),
            "lxml floor (parse only)": lambda: run_floor(src),
        }
        times: dict[str, list[float]] = {k: [] for k in contenders}
        cpu: dict[str, list[float]] = {k: [] for k in contenders}
        counts: dict[str, int] = {}
        load = [os.getloadavg()[0]]
        for r in range(args.rounds):
            for name, fn in contenders.items():
                t0, c0 = time.perf_counter(), time.process_time()
                counts[name] = fn()
                times[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
            load.append(os.getloadavg()[0])
            print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{k.split(' (')[0]} {v[-1]:.2f}s"
                                                              for k, v in times.items()), flush=True)
        base, base_cpu = min(times["pubmed-parser"]), min(cpu["pubmed-parser"])
        # CPU time (this process only) is reported too: on a shared machine it moves less with the load than
        # wall time does; the target is on wall time
        print(f"\n1 process, best of {args.rounds} (interleaved), 1-min load average "
              f"{min(load):.1f}-{max(load):.1f} on {os.cpu_count()} CPUs")
        print(f"| {'contender':<36} | records | best wall s | median wall s | records/s | x pubmed-parser (wall) "
              f"| best CPU s | x pubmed-parser (CPU) |")
        print(f"|{'-' * 38}|--------:|------------:|--------------:|----------:|-----------------------:"
              f"|-----------:|----------------------:|")
        for name, ts in times.items():
            best, best_cpu = min(ts), min(cpu[name])
            print(f"| {name:<36} | {counts[name]:>7} | {best:11.2f} | {statistics.median(ts):13.2f} | "
                  f"{counts[name] / best:9.0f} | {best / base:22.2f} | {best_cpu:10.2f} | "
                  f"{best_cpu / base_cpu:21.2f} |")


if __name__ == "__main__":
    main()
