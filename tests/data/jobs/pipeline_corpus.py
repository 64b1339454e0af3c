"""A tiny mixed corpus of our own making for the pipeline tests: MEDLINE XML baseline + update files (new versions,
a deletion) and JSONL files (the jsonl reader), with exact and near duplicates across files, so every cross-file
decision of the single-process tools is exercised."""

from __future__ import annotations

import json
from pathlib import Path
from xml.sax.saxutils import escape

from tool_scripts import load_tool

from megatron_biomed.data.cleaning import CleaningConfig
from megatron_biomed.data.indexed.sample_text import synthetic_abstracts
from megatron_biomed.data.jobs import PipelineSpec
from megatron_biomed.tokenizer import TokenizerTrainConfig, train_bpe_tokenizer


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



class Corpus:
    def __init__(self, root: Path):
        self.root = root
        self.inputs = make_corpus(root / "in")
        self.tokenizer = root / "tok"
        train_bpe_tokenizer(synthetic_abstracts(200, seed=3), TokenizerTrainConfig(vocab_size=500), self.tokenizer)
        self._refs: dict[bool, Path] = {}

    def reference(self, near_dup: bool) -> Path:
        """The single-process tools' output prefix (``..._text_document``) and their JSONL directory beside it."""
        if near_dup not in self._refs:
            out = self.root / f"ref_near{int(near_dup)}"
            args = ["--input", str(self.root / "in"), "--output-dir", str(out / "jsonl"), "--no-progress"]
            assert load_tool("pubmed_to_jsonl").main(args + (["--near-dup"] if near_dup else [])) == 0
            assert load_tool("preprocess_data").main([
                "--input", str(out / "jsonl" / "*.jsonl"), "--tokenizer", str(self.tokenizer), "--output-prefix",
                str(out / "ref"), "--workers", "1", "--append-eod", "--no-progress"]) == 0
            self._refs[near_dup] = out
        return self._refs[near_dup]

    def spec(self, work: Path, tasks: int, near_dup: bool, **kw) -> PipelineSpec:
        return PipelineSpec(inputs=tuple(str(p) for p in self.inputs), work_dir=str(work),
                            output_prefix=str(work / "out"), tokenizer=str(self.tokenizer), tasks=tasks,
                            cleaning=CleaningConfig(near_dup=near_dup), append_eod=True, **kw)


def same_bytes(a: str | Path, b: str | Path) -> bool:
    return Path(a).read_bytes() == Path(b).read_bytes()


def assert_identical(prefix: str | Path, reference_dir: Path) -> None:
    for ext in (".bin", ".idx"):
        assert same_bytes(f"{prefix}{ext}", reference_dir / f"ref_text_document{ext}"), f"{prefix}{ext} differs"
