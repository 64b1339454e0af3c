"""The NER readers: CoNLL/BIO files and PubTator documents, on files of our own making (bad lines included) and on
the shared BLURB / BC5CDR / NCBI-disease train and dev files (skipped, naming the file, when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from megatron_biomed.data.tasks import ReadReport, TaskDataError, read_conll, read_pubtator, read_task_file
from megatron_biomed.data.tasks.entities import OVERLAP, resolve_overlaps, sentence_breaks, split_words

CONLL = "Famotidine\tB-Chemical\n-\tI-Chemical\nassociated\tO\ndelirium\tO\n.\tO\n\n\nA\tO\nseries\tO\n"

# Our own abstract (PMID 1): title "Aspirin and heart failure." + " " + the abstract. Offsets counted by the test
# from the text itself, so the expectations do not depend on the reader.
TITLE = "Aspirin and heart failure."
ABSTRACT = "We gave aspirin-like drugs to 3 rats. Congestive heart failure followed! No renal failure."
TEXT = f"{TITLE} {ABSTRACT}"


def span(text: str, nth: int = 0):
    start = -1
    for _ in range(nth + 1):
        start = TEXT.index(text, start + 1)
    return start, start + len(text)


def mention(text: str, etype: str, nth: int = 0, pmid: str = "1") -> str:
    s, e = span(text, nth)
    return f"{pmid}\t{s}\t{e}\t{text}\t{etype}\tD0"


def pubtator(*mentions: str, pmid: str = "1") -> str:
    lines = [f"{pmid}|t|{TITLE}", f"{pmid}|a|{ABSTRACT}", *mentions, f"{pmid}\tCID\tD1\tD2"]
    return "\n".join(lines) + "\n\n"


def test_conll_sentences_tags_and_first_letter(write):
    path = write("x.tsv", CONLL)
    got = read_conll(path)
    assert [s.words for s in got] == [("Famotidine", "-", "associated", "delirium", "."), ("A", "series")]
    assert got[0].tags == ("B-Chemical", "I-Chemical", "O", "O", "O") and got[1].tags == ("O", "O")
    assert got[0].uid == f"{path}:1" and got[1].uid == f"{path}:8"
    short = read_task_file(path, "conll", first_letter_only=True)
    assert short[0].tags == ("B", "I", "O", "O", "O")
    assert read_conll(write("j.tsv", "IL-2\tB\ngene\tI\n"))[0].tags == ("B", "I")  # JNLPBA's untyped tags


@pytest.mark.parametrize(
    "bad_line, reason",
    [("delirium\tX-Disease", "bad tag"), ("delirium\tB_Disease", "bad tag"), ("delirium O", "not token<TAB>tag"),
     ("\tO", "not token<TAB>tag")],
)  # fmt: skip
def test_conll_bad_line_names_its_line_and_skips_its_sentence(write, bad_line, reason):
    path = write("bad.tsv", CONLL.replace("delirium\tO", bad_line))
    with pytest.raises(TaskDataError) as e:
        read_conll(path)
    assert str(e.value).startswith(f"{path}:4: ") and e.value.reason == reason
    report = ReadReport(str(path))
    got = read_conll(path, skip_bad=True, report=report)
    assert [s.words for s in got] == [("A", "series")]  # the whole first sentence is dropped, the next is kept
    assert report.read == 1 and report.skipped == {reason: 1}


def test_pubtator_words_tags_types_and_units(write):
    path = write("doc.txt", pubtator(mention("Aspirin", "Chemical"), mention("heart failure", "Disease"),
                                     mention("aspirin", "Chemical"), mention("Congestive heart failure", "Disease"),
                                     mention("renal failure", "Disease")))  # fmt: skip
    sents = read_pubtator(path)
    # Title, then three sentences; "aspirin-like" is split at the hyphen (and at the mention's end).
    assert [s.uid for s in sents] == ["1:0", "1:1", "1:2", "1:3"]
    assert sents[0].words == ("Aspirin", "and", "heart", "failure", ".")
    assert sents[0].tags == ("B-Chemical", "O", "B-Disease", "I-Disease", "O")
    assert sents[1].words[:5] == ("We", "gave", "aspirin", "-", "like")
    assert sents[1].tags[:5] == ("O", "O", "B-Chemical", "O", "O")
    assert sents[2].tags == ("B-Disease", "I-Disease", "I-Disease", "O", "O")
    assert sents[3].words == ("No", "renal", "failure", ".") and sents[3].tags == ("O", "B-Disease", "I-Disease", "O")
    # Type filter: Chemical only; the same words, disease words now O.
    chem = read_pubtator(path, types=["Chemical"])
    assert [s.words for s in chem] == [s.words for s in sents]
    assert {t for s in chem for t in s.tags} == {"O", "B-Chemical"}
    # One record per abstract, mentions renamed to one type (as NCBI-disease's four classes become Disease).
    (doc,) = read_task_file(path, "pubtator", unit="document", entity_type="Entity")
    assert doc.uid == "1" and doc.words == sum((s.words for s in sents), ())
    assert doc.tags.count("B-Entity") == 5


def test_pubtator_mention_inside_a_word_splits_it(write):
    assert split_words("aspirinlike x", [0, 7]) == [(0, 7), (7, 11), (12, 13)]
    sents = read_pubtator(write("d.txt", pubtator(mention("Congest", "X"))))
    assert sents[2].words[:3] == ("Congest", "ive", "heart") and sents[2].tags[:3] == ("B-X", "O", "O")
    assert "Congestive" in read_pubtator(write("e.txt", pubtator()))[2].words  # no mention: the word stays whole


def test_sentence_breaks_need_a_space_after_the_stop_and_stay_outside_mentions():
    text = "T. Dose 0.5 mg. Next one"  # words: T . Dose 0 . 5 mg . Next one
    spans = split_words(text)
    assert sentence_breaks(text, spans, ["O"] * 10, title_end=2) == [0, 2, 8]  # not inside "0.5"
    assert sentence_breaks(text, spans, ["O"] * 8 + ["I-X", "O"], title_end=2) == [0, 2]


def test_pubtator_overlaps_keep_the_longest_and_are_counted(write):
    # "heart failure" nested in "Congestive heart failure"; "failure followed" crosses it; same type and another.
    path = write("o.txt", pubtator(mention("heart failure", "Disease", 1),
                                   mention("Congestive heart failure", "Disease"),
                                   mention("failure followed", "Disease"), mention("heart", "Anatomy", 1)))  # fmt: skip
    report = ReadReport(str(path))
    sents = read_pubtator(path, report=report)
    assert sents[2].tags == ("B-Disease", "I-Disease", "I-Disease", "O", "O")
    assert report.skipped == {OVERLAP: 3} and report.read == 4
    # Only the Anatomy type asked for: nothing overlaps it any more.
    report = ReadReport(str(path))
    anat = read_pubtator(path, report=report, types=["Anatomy"])
    assert anat[2].tags == ("O", "B-Anatomy", "O", "O", "O") and report.skipped == {}
    assert resolve_overlaps([(0, 5, "A"), (0, 5, "A"), (2, 9, "B")]) == ([(2, 9, "B")], 2)


@pytest.mark.parametrize(
    "bad, reason",
    [
        ("1\t500\t507\taspirin\tChemical\tD0", "offset outside the text"),
        ("1\t0\t7\tAspirim\tChemical\tD0", "mention text differs"),
        ("1\tx\t7\tAspirin\tChemical\tD0", "bad offsets"),
        ("1\t0\t7", "not a mention"),
        ("2\t0\t7\tAspirin\tChemical\tD0", "PMID differs"),
    ],
)
def test_pubtator_bad_line_names_its_line_and_skips_its_document(write, bad, reason):
    good = pubtator(pmid="2")  # a second document, no mentions
    path = write("bad.txt", pubtator(mention("Aspirin", "Chemical"), bad) + good)
    with pytest.raises(TaskDataError) as e:
        read_pubtator(path)
    assert str(e.value).startswith(f"{path}:4: document 1: ") and e.value.reason == reason
    report = ReadReport(str(path))
    got = read_pubtator(path, skip_bad=True, report=report, unit="document")
    assert [d.uid for d in got] == ["2"] and report.skipped == {reason: 1}


def test_pubtator_without_a_title_line_is_refused(write):
    path = write("t.txt", "1|a|no title\n")
    with pytest.raises(TaskDataError, match=r"t.txt:1: expected a title line"):
        read_pubtator(path, skip_bad=True)


# ---- the shared files ------------------------------------------------------------------------------------------

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
# Sentences per file, from shared/data/bio_ner/SOURCE.md (the dev files, and NCBI-disease's train file: the large
# train files would cost CI seconds and test nothing more).
CONLL_COUNTS = {"bc2gm/devel": 2510, "bc5cdr_chem/devel": 4578, "bc5cdr_disease/devel": 4578,
                "ncbi_disease/train": 5421, "ncbi_disease/devel": 923, "jnlpba/devel": 3835}  # fmt: skip
# Documents per file, from shared/data/pubmed_abstracts/SOURCE.md ("raw files").
PUBTATOR_COUNTS = {
    "bc5cdr/CDR_TrainingSet.PubTator.txt": 500, "bc5cdr/CDR_DevelopmentSet.PubTator.txt": 499,
    "ncbi_disease/NCBItrainset_corpus.txt": 593, "ncbi_disease/NCBIdevelopset_corpus.txt": 100,
}  # fmt: skip


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared data file missing: {path}")
    return path


@pytest.mark.parametrize("corpus", sorted(CONLL_COUNTS))
def test_shared_conll_files_match_their_counts(corpus):
    path = need(DATA / "bio_ner" / f"{corpus}.tsv")
    report = ReadReport(str(path))
    sents = read_conll(path, report=report, first_letter_only=True)
    assert len(sents) == report.read == CONLL_COUNTS[corpus] and not report.skipped, (path, len(sents))
    assert {t for s in sents for t in s.tags} == {"B", "I", "O"}


@pytest.mark.parametrize("name", sorted(PUBTATOR_COUNTS))
def test_shared_pubtator_files_match_their_counts(name):
    path = need(DATA / "pubmed_abstracts" / name)
    report = ReadReport(str(path))
    docs = read_pubtator(path, report=report, unit="document")
    assert len(docs) == report.read == PUBTATOR_COUNTS[name] and not any("mention" in r for r in report.skipped)
    assert all(d.uid.isdigit() for d in docs)
    # Every kept mention became B (+ I...) words; overlapping ones are the only ones dropped.
    raw = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.count("\t") >= 4]
    assert sum(t.startswith("B-") for d in docs for t in d.tags) == len(raw) - report.skipped.get(OVERLAP, 0)


@pytest.mark.parametrize(
    "pubtator_file, kw, conll_dir",
    [("ncbi_disease/NCBIdevelopset_corpus.txt", {"entity_type": "Disease"}, "ncbi_disease"),
     ("bc5cdr/CDR_DevelopmentSet.PubTator.txt", {"types": ["Chemical"]}, "bc5cdr_chem")],
)  # fmt: skip
def test_pubtator_sentences_reproduce_the_blurb_iob_files(pubtator_file, kw, conll_dir):
    """Our words, sentences and tags from the PubTator offsets against BLURB's IOB files of the same abstracts
    (MTL-Bioinformatics-2016, made by its authors' own conversion): measured 900 of our 955 NCBI-disease dev
    sentences and 4504 of 4570 BC5CDR dev sentences are word for word one of theirs, every one of those with the
    same tags; the entity counts are 787 / 787 and 5343 / 5346."""
    ours = read_pubtator(need(DATA / "pubmed_abstracts" / pubtator_file), **kw)
    theirs = {s.words: s.tags for s in read_conll(need(DATA / "bio_ner" / conll_dir / "devel.tsv"))}
    matched = [s for s in ours if s.words in theirs]
    assert len(matched) >= 0.94 * len(ours), (len(matched), len(ours))
    assert all(theirs[s.words] == s.tags for s in matched)
    entities = sum(t.startswith("B") for s in ours for t in s.tags)
    assert abs(entities - sum(t.startswith("B") for tags in theirs.values() for t in tags)) <= 5
