"""Which records the PubMed/PMC cleaning pipeline keeps: one dataclass, one field per CLI flag."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

PHI_AUDIT_MODES = ("off", "flag", "drop")


@dataclass(frozen=True)
class CleaningConfig:
    """Filter switches. Each dropped record is counted under one reason in the report.

    Field names match the ``tools/pubmed_to_jsonl.py`` flags (``min_words`` is ``--min-words``).
    """

    drop_no_abstract: bool = True  # MEDLINE: empty abstract; PMC: neither abstract nor body
    languages: tuple[str, ...] = ("eng",)  # ISO 639-2 codes to keep; empty keeps every language
    min_words: int = 20  # records whose `text` has fewer whitespace-separated words are dropped
    drop_retracted: bool = True  # "Retracted Publication" / "Retraction of Publication" / PMC "retraction"
    commercial_only: bool = False  # PMC: keep only licences that allow commercial use
    dedup_exact: bool = True  # drop records whose normalized text was seen before
    dedup_pmid: bool = True  # one record per PMID: latest version / later file wins
    near_dup: bool = False  # MinHash-LSH near-duplicate removal (datasketch)
    near_dup_threshold: float = 0.8  # estimated Jaccard similarity of word shingles
    near_dup_num_perm: int = 128
    near_dup_shingle: int = 5  # words per shingle
    keep_captions: bool = False  # PMC: keep figure and table captions in the body text
    # clinical notes: identifier-like patterns left in the text (filters_clinical_notes.py) are "off" (not
    # looked for), "flag" (kept, counted per kind under `flagged` in the report) or "drop" (dropped as
    # phi_<kind>). Our choice of default: flag, since the patterns also match harmless text (see the report)
    phi_audit: str = "flag"
    deid_token: str = "[DEID]"  # clinical notes: what [** ... **] and ___ placeholders become; "" keeps them
    drop_withdrawn: bool = True  # ClinicalTrials.gov: drop studies whose overall status is Withdrawn
    # USPTO: keep patents with an IPC or CPC symbol starting with one of these prefixes (A61K, C07, C12); empty: all
    patent_classes: tuple[str, ...] = ()
    patent_designs: bool = False  # USPTO: keep design patents (kind S), dropped as patent_design by default

    def __post_init__(self) -> None:
        if self.min_words < 0:
            raise ValueError(f"CleaningConfig.min_words must be >= 0, got {self.min_words}")
        if not 0.0 < self.near_dup_threshold <= 1.0:
            raise ValueError(
                f"CleaningConfig.near_dup_threshold must be in (0, 1], got {self.near_dup_threshold}"
            )
        if self.near_dup_num_perm < 16:
            raise ValueError(f"CleaningConfig.near_dup_num_perm must be >= 16, got {self.near_dup_num_perm}")
        if self.phi_audit not in PHI_AUDIT_MODES:
            raise ValueError(f"CleaningConfig.phi_audit must be one of {PHI_AUDIT_MODES}, got {self.phi_audit!r}")
        if self.near_dup_shingle < 1:
            raise ValueError(f"CleaningConfig.near_dup_shingle must be >= 1, got {self.near_dup_shingle}")
        # IPC/CPC symbols start with a section letter A-H (or Y, CPC's tagging section): "A61K", "C07", "C12N15/10"
        bad = [p for p in self.patent_classes if not re.fullmatch(r"[A-HYa-hy][0-9A-Za-z/ ]*", p)]
        if bad:
            raise ValueError(
                f"CleaningConfig.patent_classes: {bad} are not IPC/CPC prefixes; give them as e.g. A61K,A61P,C07,C12"
            )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["languages"] = list(self.languages)
        d["patent_classes"] = list(self.patent_classes)
        return d
