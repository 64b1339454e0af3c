"""Fragmentation report: how finely tokenizers cut held-out text and biomedical terms.

Tokens per word and per document on held-out documents, and the pieces each term is split
into, side by side for several tokenizers (tools/tokenizer_report.py prints it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from megatron_biomed.tokenizer.bio_tokenizer import BioTokenizer

# Terms of our choosing that span drugs, diseases, anatomy, procedures and lab vocabulary.
DEFAULT_TERMS = (
    "acetylcholinesterase", "immunohistochemistry", "thrombocytopenia", "pharmacokinetics",
    "glomerulonephritis", "hydroxychloroquine", "electroencephalography", "cardiomyopathy",
    "angiotensin", "hyperlipidemia", "methotrexate", "encephalopathy", "bronchoalveolar",
    "osteoarthritis", "lymphadenopathy", "pneumonitis", "tachycardia", "nephrotoxicity",
    "hepatocellular carcinoma", "myocardial infarction", "randomized controlled trial",
    "adenocarcinoma", "immunoglobulin", "polymerase chain reaction", "phosphorylation",
    "cyclooxygenase", "dexamethasone", "erythropoietin", "schizophrenia", "intravenous",
)


@dataclass
class FragmentationStats:
    documents: int = 0
    words: int = 0
    tokens: int = 0
    characters: int = 0

    @property
    def tokens_per_word(self) -> float:
        return self.tokens / max(self.words, 1)

    @property
    def tokens_per_document(self) -> float:
        return self.tokens / max(self.documents, 1)

    @property
    def chars_per_token(self) -> float:
        return self.characters / max(self.tokens, 1)


@dataclass
class TokenizerReport:
    name: str
    vocab_size: int
    stats: FragmentationStats
    term_pieces: dict[str, list[str]] = field(default_factory=dict)


def fragmentation(tok: BioTokenizer, texts: Sequence[str], batch: int = 256) -> FragmentationStats:
    """Whitespace-separated words vs tokens over ``texts``."""
    s = FragmentationStats()
    for i in range(0, len(texts), batch):
        chunk = list(texts[i:i + batch])
        for t, ids in zip(chunk, tok.encode_batch(chunk)):
            s.documents += 1
            s.words += len(t.split())
            s.tokens += len(ids)
            s.characters += len(t)
    return s


def term_pieces(tok: BioTokenizer, term: str) -> list[str]:
    """The pieces ``term`` is cut into where it appears mid-sentence (after a space), as text."""
    ids = tok.encode(" " + term)
    return [tok.decode([i]) for i in ids]


def build_report(name: str, tok: BioTokenizer, texts: Sequence[str], terms: Sequence[str]) -> TokenizerReport:
    return TokenizerReport(name, tok.vocab_size, fragmentation(tok, texts),
                           {t: term_pieces(tok, t) for t in terms})


def format_report(reports: Sequence[TokenizerReport]) -> str:
    """Markdown: a summary table, then one row per term with each tokenizer's split."""
    names = [r.name for r in reports]
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---:|" * len(reports)]
    rows = [("vocab size", lambda r: f"{r.vocab_size:,}"),
            ("documents", lambda r: f"{r.stats.documents:,}"),
            ("tokens", lambda r: f"{r.stats.tokens:,}"),
            ("tokens per word", lambda r: f"{r.stats.tokens_per_word:.3f}"),
            ("tokens per document", lambda r: f"{r.stats.tokens_per_document:.1f}"),
            ("characters per token", lambda r: f"{r.stats.chars_per_token:.2f}")]
    for label, fn in rows:
        lines.append(f"| {label} | " + " | ".join(fn(r) for r in reports) + " |")
    terms = list(reports[0].term_pieces) if reports else []
    if terms:
        lines += ["", "| term | " + " | ".join(names) + " |", "|---|" + "---|" * len(reports)]
        for t in terms:
            cells = []
            for r in reports:
                p = r.term_pieces[t]
                cells.append(f"{len(p)}: " + "/".join(x.strip() or repr(x) for x in p))
            lines.append(f"| {t} | " + " | ".join(cells) + " |")
        avg = " | ".join(f"{sum(len(p) for p in r.term_pieces.values()) / len(terms):.2f}" for r in reports)
        lines.append(f"| mean pieces per term | {avg} |")
    return "\n".join(lines)
