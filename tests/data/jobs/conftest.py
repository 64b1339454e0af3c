"""Fixtures of the pipeline tests: a tiny mixed corpus, a tokenizer trained on synthetic text, and the reference
outputs of the single-process tools on it (tools/pubmed_to_jsonl.py, then tools/preprocess_data.py --workers 1)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import make_corpus  # noqa: E402

from megatron_biomed.data.cleaning import CleaningConfig  # noqa: E402
from megatron_biomed.data.indexed.sample_text import synthetic_abstracts  # noqa: E402
from megatron_biomed.data.jobs import PipelineSpec  # noqa: E402
from megatron_biomed.data.readers import detect_format  # noqa: E402
from megatron_biomed.tokenizer import TokenizerTrainConfig, train_bpe_tokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Corpus:
    c = Corpus(tmp_path_factory.mktemp("pipeline_corpus"))
    assert {detect_format(p) for p in c.inputs} == {"medline", "jsonl"}
    return c


def same_bytes(a: str | Path, b: str | Path) -> bool:
    return Path(a).read_bytes() == Path(b).read_bytes()


def assert_identical(prefix: str | Path, reference_dir: Path) -> None:
    for ext in (".bin", ".idx"):
        assert same_bytes(f"{prefix}{ext}", reference_dir / f"ref_text_document{ext}"), f"{prefix}{ext} differs"
