"""Cleaning: per-record filters, exact and near-duplicate detection, cross-file reconcile rules."""

from __future__ import annotations

import random

import pytest

from megatron_biomed.data.cleaning import (
    CleaningConfig,
    CleaningReport,
    ExactDeduper,
    NearDuplicateIndex,
    filter_reason,
    normalize_text,
    text_hash,
)
from megatron_biomed.data.cleaning.convert import record_key
from megatron_biomed.data.cleaning.reconcile import drop_decisions
from megatron_biomed.data.readers import medline_key

WORDS = " ".join(f"word{i}" for i in range(40))


def rec(**kw) -> dict:
    base = {"source": "medline", "pmid": "1", "version": 1, "title": "T", "abstract": WORDS, "language": ["eng"],
                "publication_types": ["Journal Article"]}
    base.update(kw)
    base.setdefault("text", base["title"] + "\n" + base["abstract"])
    return base


def test_filter_reasons_each_flag():
    cfg = CleaningConfig()
    assert filter_reason(rec(), cfg) is None
    assert filter_reason(rec(publication_types=["Journal Article", "Retracted Publication"]), cfg) == "retracted"
    assert filter_reason(rec(publication_types=["Retraction of Publication"]), cfg) == "retracted"
    assert filter_reason(rec(language=["ita"]), cfg) == "non_english"
    assert filter_reason(rec(abstract=""), cfg) == "no_abstract"
    assert filter_reason(rec(abstract="only five words here now"), cfg) == "too_short"
    # each flag switches its filter off
    assert filter_reason(rec(publication_types=["Retracted Publication"]), CleaningConfig(drop_retracted=False)) is None
    assert filter_reason(rec(language=["ita"]), CleaningConfig(languages=())) is None
    assert filter_reason(rec(language=["ita"]), CleaningConfig(languages=("ita",))) is None
    assert filter_reason(rec(abstract="", text=WORDS), CleaningConfig(drop_no_abstract=False)) is None
    assert filter_reason(rec(abstract="a b c"), CleaningConfig(min_words=0)) is None


def test_first_reason_wins_in_fixed_order():
    r = rec(abstract="", language=["ger"], publication_types=["Retracted Publication"])
    assert filter_reason(r, CleaningConfig()) == "retracted"
    assert filter_reason(r, CleaningConfig(drop_retracted=False)) == "non_english"


def test_pmc_language_codes_and_license_filter():
    pmc = {"source": "pmc", "title": "T", "abstract": "", "sections": [{"title": "x"}], "text": WORDS,
               "language": ["en"], "publication_types": ["research-article"], "commercial_use": False}
    assert filter_reason(pmc, CleaningConfig()) is None  # "en" is ISO 639-1 for "eng"
    assert filter_reason(dict(pmc, language=["fr"]), CleaningConfig()) == "non_english"
    assert filter_reason(pmc, CleaningConfig(commercial_only=True)) == "noncommercial_license"
    assert filter_reason(dict(pmc, commercial_use=True), CleaningConfig(commercial_only=True)) is None
    assert filter_reason(dict(pmc, publication_types=["retraction"]), CleaningConfig()) == "retracted"
    # a PMC article with neither abstract nor body has no text beyond its title
    assert filter_reason(dict(pmc, sections=[], text="T " * 30), CleaningConfig()) == "no_abstract"


@pytest.mark.parametrize("field,value", [("min_words", -1), ("near_dup_threshold", 0.0), ("near_dup_threshold", 1.5),
                                         ("near_dup_num_perm", 4), ("near_dup_shingle", 0)])
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        CleaningConfig(**{field: value})


def test_exact_dedup_ignores_case_punctuation_and_spacing():
    assert normalize_text("  The  RESULTS: p<0.05!\n") == "the results p 0 05"
    assert text_hash("Hello, World.") == text_hash("hello world")
    assert text_hash("hello world") != text_hash("hello word")
    d = ExactDeduper()
    assert [d.seen_before(t) for t in ["A b.", "a  B", "a c", "A C!"]] == [False, True, False, True]


def test_near_duplicates_found_and_distinct_texts_kept():
    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(3000)]
    base = [rng.choice(vocab) for _ in range(300)]
    near = list(base)
    near[150] = "changed"  # one word of 300 differs
    other = [rng.choice(vocab) for _ in range(300)]
    idx = NearDuplicateIndex(threshold=0.8, num_perm=128, shingle=5)
    assert idx.seen_before(" ".join(base)) is False
    assert idx.seen_before(" ".join(near)) is True
    assert idx.seen_before(" ".join(other)) is False
    # a text sharing only its first half is not a near duplicate at 0.8
    half = base[:150] + [rng.choice(vocab) for _ in range(150)]
    assert idx.seen_before(" ".join(half)) is False


def meta(fmt, events):
    return {"format": fmt, "events": events}


def test_reconcile_versions_deletions_and_filtered_newer_copies():
    k = medline_key
    metas = [
        # baseline: PMIDs 1, 2, 3, 4 written to lines 0..3
        meta("medline", [["r", k(1, 1), 0], ["r", k(2, 1), 1], ["r", k(3, 1), 2], ["r", k(4, 1), 3]]),
        # update 1: PMID 1 revised (line 0); PMID 2 deleted; PMID 3 revised but the new copy was
        # filtered out (line -1), which still retires the old one; PMID 4 gets a Version 2
        meta("medline", [["r", k(1, 1), 0], ["d", k(2, 1), -1], ["r", k(3, 1), -1], ["r", k(4, 2), 1]]),
    ]
    drops = drop_decisions(metas, CleaningConfig())
    assert drops == {(0, 0): "superseded", (0, 1): "deleted", (0, 2): "superseded", (0, 3): "superseded"}
    # without PMID dedup only the deletion applies
    assert drop_decisions(metas, CleaningConfig(dedup_pmid=False)) == {(0, 1): "deleted"}


def test_reconcile_keeps_pmc_article_and_medline_abstract_with_same_pmid_apart():
    m = record_key({"source": "medline", "pmid": "77", "version": 1})
    p = record_key({"source": "pmc", "pmid": "77", "pmcid": "PMC9"})
    q = record_key({"source": "pmc", "pmid": None, "pmcid": "PMC9"})
    assert len({m, p, q}) == 3 and m >> 8 != p >> 8
    metas = [meta("medline", [["r", m, 0]]), meta("pmc", [["r", p, 0]]), meta("pmc", [["r", p, 0]])]
    assert drop_decisions(metas, CleaningConfig()) == {(1, 0): "duplicate_pmid"}
    assert record_key({"source": "pmc", "pmid": None, "pmcid": None}) is None


def test_report_adds_files_and_formats():
    r = CleaningReport(files_total=2)
    r.add_file({"records_read": 5, "deletions_read": 1, "dropped": {"no_abstract": 2}, "bad_file": None})
    r.add_file({"records_read": 0, "deletions_read": 0, "dropped": {},
                "bad_file": {"path": "x.xml", "line": 3, "problem": "malformed XML"}})
    r.records_kept = 3
    d = r.to_dict()
    assert (d["records_read"], d["records_dropped"], d["files_bad"]) == (5, 2, 1)
    text = r.format()
    assert "no_abstract" in text and "x.xml:3: malformed XML" in text


def test_ranked_copies_keep_the_highest_rank_whatever_the_file_order():
    """A reader's rank (a last-update date) decides between copies of one key; equal ranks: the later copy."""
    cfg = CleaningConfig()
    # key 5: the newer copy is read first and must stay; key 6: equal ranks, the later copy wins
    metas = [meta("pmc", [["r", 5, 0, 20230101], ["r", 6, 1, 7]]),
             meta("pmc", [["r", 5, 0, 20220101], ["r", 6, 1, 7]])]
    assert drop_decisions(metas, cfg) == {(1, 0): "duplicate_pmid", (0, 1): "duplicate_pmid"}
    # a newer copy that was filtered out (line -1) still retires the older one
    metas = [meta("pmc", [["r", 5, 0, 1]]), meta("pmc", [["r", 5, -1, 2]])]
    assert drop_decisions(metas, cfg) == {(0, 0): "duplicate_pmid"}
