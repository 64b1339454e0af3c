"""A tiny mixed corpus of our own making for the pipeline tests: MEDLINE XML baseline + update files (new versions,
a deletion) and JSONL files (the jsonl reader), with exact and near duplicates across files, so every cross-file
decision of the single-process tools is exercised."""

from __future__ import annotations

import json
from pathlib import Path
from xml.sax.saxutils import escape

from megatron_biomed.data.indexed.sample_text import synthetic_abstracts


def _cite(pmid: int, abstract: str, version: int = 1) -> str:
    return (f'<PubmedArticle><MedlineCitation><PMID Version="{version}">{pmid}</PMID><Article><Journal><Title>J'
            f"</Title></Journal><ArticleTitle>Title {pmid}.</ArticleTitle><Abstract><AbstractText>{escape(abstract)}"
            "</AbstractText></Abstract><Language>eng</Language></Article></MedlineCitation></PubmedArticle>")


def _xml(items: list[str]) -> str:
    return '<?xml version="1.0" encoding="UTF-8"?>\n<PubmedArticleSet>\n' + "\n".join(items) + "\n</PubmedArticleSet>\n"


def near_copy(text: str) -> str:
    words = text.split()
    words[len(words) // 2] = "altered"
    return " ".join(words)


def make_corpus(root: Path, n_xml: int = 6, n_jsonl: int = 4, per_file: int = 12) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    texts = synthetic_abstracts((n_xml + n_jsonl) * per_file, seed=11, sentences=(6, 10))
    files = []
    pmid = 1000
    for f in range(n_xml):
        items = []
        for i in range(per_file):
            t = texts[f * per_file + i]
            if f and i == 0:
                t = texts[(f - 1) * per_file + 1]  # exact duplicate of a text in the file before
            if f and i == 1:
                t = near_copy(texts[(f - 1) * per_file + 2])  # near duplicate across files
            if f and i == 2:
                items.append(_cite(1000 + (f - 1) * per_file + 3, t, version=2))  # a new version of an older PMID
                continue
            items.append(_cite(pmid, t))
            pmid += 1
        if f == n_xml - 1:
            items.append(f'<DeleteCitation><PMID Version="1">{1000 + 5}</PMID></DeleteCitation>')
        name = f"pubmed25n{f + 1:04d}.xml"
        (root / name).write_text(_xml(items), encoding="utf-8")
        files.append(root / name)
    for f in range(n_jsonl):
        base = (n_xml + f) * per_file
        lines = []
        for i in range(per_file):
            t = texts[base + i]
            if i == 3:
                t = near_copy(texts[base - per_file + 4])
            if i == 4:
                t = texts[2]  # exact duplicate of a MEDLINE abstract text (the XML record text has a title too)
            lines.append(json.dumps({"id": f"doc{base + i}", "text": t, "source": "synthetic"}))
        name = f"zz_abstracts_{f:02d}.jsonl"
        (root / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        files.append(root / name)
    return files
