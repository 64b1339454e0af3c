"""ChemProt, GAD, BIOSSES and HoC readers: records from fixtures of our own making in each corpus's schema,
every bad-record kind named by ``path:line`` (and counted by reason with ``skip_bad``), and the shared files
(skipped, naming the file, when absent)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from megatron_biomed.data.tasks import (
    CHEMPROT_LABELS,
    GAD_LABELS,
    HOC_LABELS,
    READERS,
    ClassificationItem,
    MultiLabelItem,
    ReadReport,
    SentencePairItem,
    TaskDataError,
    read_task_file,
)
from megatron_biomed.data.tasks.relation_sentences import CHEMPROT_CPR_GROUP

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared data file missing: {path}")
    return path


def chemprot_row(text="<< aspirin >> blocks [[ COX-1 ]] here.", label="INHIBITOR"):
    return json.dumps({"text": text, "label": label, "metadata": []})


def bad_lines(read, path, expected: dict[int, tuple[str, str]]):
    """Each bad line alone raises ``path:line: problem``; with skip_bad all are counted by reason."""
    lines = path.read_text().splitlines()
    for line, (reason, problem) in expected.items():
        single = path.with_name(f"one_{line}{''.join(path.suffixes)}")
        keep = [lines[0]] if path.suffix == ".tsv" and lines[0].startswith("sentence_id") else []
        single.write_text("\n".join(keep + [lines[line - 1]]) + "\n")
        with pytest.raises(TaskDataError) as err:
            read(single)
        want_line = len(keep) + 1
        assert str(err.value).startswith(f"{single}:{want_line}: ") and problem in str(err.value), str(err.value)
        assert err.value.reason == reason and err.value.line == want_line
    report = ReadReport(str(path))
    items = read(path, skip_bad=True, report=report)
    assert report.skipped == dict(Counter(r for r, _ in expected.values())), report.skipped
    assert report.read == len(items)
    return items


def test_chemprot_items_and_bad_lines(write):
    rows = [
        chemprot_row(),
        chemprot_row("[[ EGFR ]] is hit by << 6[[(3-iodo)]] >> x.", "SUBSTRATE_PRODUCT-OF"),  # "[[" in a name
        "",
        chemprot_row(label="CPR:4"),
        chemprot_row(text="aspirin blocks [[ COX-1 ]]."),
        chemprot_row(text="<< a >> and << b >> and [[ c ]]."),
        json.dumps({"label": "INHIBITOR"}),
        json.dumps({"text": "<< a >> [[ b ]]", "label": 3}),
        "{not json",
    ]
    path = write("chemprot.jsonl", "\n".join(rows) + "\n")
    items = bad_lines(lambda p, **kw: read_task_file(p, "chemprot", **kw), path, {
        4: ("unknown label", "label 'CPR:4' is not one of UPREGULATOR"),
        5: ("bad argument markers", "<< ... >> is missing or repeated"),
        6: ("bad argument markers", "<< ... >> is missing or repeated"),
        7: ("missing 'text'", "missing 'text'"),
        8: ("bad label", "'label' must be a string, got number"),
        9: ("invalid JSON", "invalid JSON"),
    })  # fmt: skip
    assert items == [
        ClassificationItem("", "<< aspirin >> blocks [[ COX-1 ]] here.", CHEMPROT_LABELS.index("INHIBITOR"),
                           CHEMPROT_LABELS, uid=f"{path}:1"),
        ClassificationItem("", "[[ EGFR ]] is hit by << 6[[(3-iodo)]] >> x.",
                           CHEMPROT_LABELS.index("SUBSTRATE_PRODUCT-OF"), CHEMPROT_LABELS, uid=f"{path}:2"),
    ]  # fmt: skip
    # 13 labels, grouped into BLURB's five evaluated classes
    assert len(CHEMPROT_LABELS) == 13 and sorted(set(CHEMPROT_CPR_GROUP.values())) == [
        "CPR:3", "CPR:4", "CPR:5", "CPR:6", "CPR:9"]  # fmt: skip


def test_gad_items_and_bad_lines(write):
    rows = [
        "the @GENE$ variant raises @DISEASE$ risk.\t1",
        'no "link" of @GENE$ with @DISEASE$.\t0',
        "sentence\tlabel",
        "@GENE$ and @DISEASE$\t2",
        "only @GENE$ here\t1",
        "@GENE$ @GENE$ @DISEASE$\t0",
        "three\tcolumns\there",
        "   \t1",
    ]
    path = write("gad.tsv", "\n".join(rows) + "\n")
    items = bad_lines(lambda p, **kw: read_task_file(p, "gad", **kw), path, {
        3: ("bad entity masks", "@GENE$, @DISEASE$ is not there once"),
        4: ("unknown label", "label '2' is not 0 or 1"),
        5: ("bad entity masks", "@DISEASE$ is not there once"),
        6: ("bad entity masks", "@GENE$ is not there once"),
        7: ("wrong number of columns", "expected 2 tab-separated columns"),
        8: ("empty sentence", "sentence is empty"),
    })  # fmt: skip
    assert [(it.context, it.label_name, it.uid) for it in items] == [
        ("the @GENE$ variant raises @DISEASE$ risk.", "1", f"{path}:1"),
        ('no "link" of @GENE$ with @DISEASE$.', "0", f"{path}:2"),
    ]
    assert GAD_LABELS == ("0", "1")


BIOSSES_HEADER = "sentence_id\tsentence_1\tsentence_2\tannotator_a\tannotator_b\tannotator_c\tannotator_d\tannotator_e"


def test_biosses_gold_is_the_annotators_mean_and_bad_lines(write):
    rows = [
        BIOSSES_HEADER,
        "7\tA cat sat.\tA cat was sitting. \t4\t3\t4\t3\t2",
        "8\tOne.\tTwo.\t0\t0\t1\t0\t0",
        "9\tOne.\tTwo.\t0\t0\t5\t0\t0",
        "10\tOne.\tTwo.\t0\t0\tx\t0\t0",
        "11\tOne.\t\t0\t0\t1\t0\t0",
        "12\tOne.\tTwo.\t0\t0\t1\t0",
    ]
    path = write("biosses.tsv", "\n".join(rows) + "\n")
    items = bad_lines(lambda p, **kw: read_task_file(p, "biosses", **kw), path, {
        4: ("score out of range", "annotator_c '5' is not in 0..4"),
        5: ("bad score", "annotator_c 'x' is not a number"),
        6: ("empty sentence_2", "sentence_2 is empty"),
        7: ("wrong number of columns", "expected 8 tab-separated columns"),
    })  # fmt: skip
    assert items == [
        SentencePairItem("A cat sat.", "A cat was sitting.", 3.2, "7", (4.0, 3.0, 4.0, 3.0, 2.0)),
        SentencePairItem("One.", "Two.", 0.2, "8", (0.0, 0.0, 1.0, 0.0, 0.0)),
    ]
    headless = write("headless.tsv", "\n".join(rows[1:]) + "\n")
    with pytest.raises(TaskDataError, match=rf"^{headless}:1: expected the header line sentence_id"):
        read_task_file(headless, "biosses", skip_bad=True)


def hoc_doc(pmid, sentences, labels):
    return json.dumps({"pmid": pmid, "split": "train", "text": "\n".join(sentences) + "\n", "labels": labels})


def test_hoc_documents_pool_their_sentences_top_level_hallmarks(write):
    rows = [
        # three sentences: none; two hallmarks joined by AND (one given twice); a subclass path
        hoc_doc(
            "1",
            ["First .", "Second .", "Third ."],
            "< <Resisting cell death--Apoptosis ANDSustaining proliferative signaling--Cell cycle AND "
            "Resisting cell death--Necrosis<Genomic instability and mutation--DNA damage--Adducts",
        ),
        hoc_doc("2", ["Only ."], "< NULL"),  # no hallmark: an empty label set, kept
        hoc_doc("3", ["A .", "B ."], "< "),  # two sentences, one label group
        hoc_doc("4", ["A ."], "<Dancing--Ballet"),
        hoc_doc("5", ["A ."], "Resisting cell death<"),
        json.dumps({"pmid": "6", "text": "A .\n"}),
    ]
    path = write("hoc.jsonl", "\n".join(rows) + "\n")
    items = bad_lines(lambda p, **kw: read_task_file(p, "hoc", **kw), path, {
        3: ("labels do not match sentences", "'labels' has 1 sentence groups for 2 sentences"),
        4: ("unknown hallmark", "hallmark 'Dancing' is not one of the ten"),
        5: ("bad labels", "must open every sentence's group with '<'"),
        6: ("missing 'labels'", "missing 'labels'"),
    })  # fmt: skip
    ids = [HOC_LABELS.index(n) for n in ("genomic instability and mutation", "resisting cell death",
                                         "sustaining proliferative signaling")]  # fmt: skip
    assert items == [
        MultiLabelItem("First . Second . Third .", tuple(sorted(ids)), HOC_LABELS, "1"),
        MultiLabelItem("Only .", (), HOC_LABELS, "2"),
    ]
    assert items[0].indicator() == tuple(int(i in ids) for i in range(10))


def test_hoc_sentences_in_biogpt_tsv(write):
    rows = ["Cells divide .\tsustaining proliferative signaling|resisting cell death", "Nothing .\tempty",
            "Odd .\tflying", "Blank .\t"]  # fmt: skip
    path = write("hoc.tsv", "\n".join(rows) + "\n")
    items = bad_lines(lambda p, **kw: read_task_file(p, "hoc", **kw), path, {
        3: ("unknown hallmark", "hallmark 'flying'"),
        4: ("missing labels", "the labels column is empty"),
    })  # fmt: skip
    assert [it.labels for it in items] == [(HOC_LABELS.index("resisting cell death"),
                                            HOC_LABELS.index("sustaining proliferative signaling")), ()]  # fmt: skip


def test_formats_are_registered():
    assert {"chemprot", "gad", "biosses", "hoc"} <= set(READERS)


# ---- the shared files ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("split, rows", [("train", 3943), ("dev", 2259)])
def test_shared_chemprot(split, rows):
    path = need(DATA / "chemprot" / f"{split}.jsonl")
    report = ReadReport(str(path))
    items = read_task_file(path, "chemprot", report=report)
    assert report.read == rows == len(items) and not report.skipped
    labels = Counter(it.label_name for it in items)
    assert set(labels) <= set(CHEMPROT_LABELS) and labels.most_common(1)[0][0] == "INHIBITOR"
    assert all("<< " in it.context and "[[ " in it.context for it in items)


def test_shared_gad():
    path = need(DATA / "gad" / "train.tsv")
    items = read_task_file(path, "gad")
    assert len(items) == 4776 and Counter(it.label_name for it in items) == {"1": 2500, "0": 2276}


def test_shared_biosses():
    for split, n in (("train", 64), ("dev", 16)):
        items = read_task_file(need(DATA / "biosses" / f"{split}.tsv"), "biosses")
        assert len(items) == n
        assert all(it.score == pytest.approx(sum(it.annotations) / 5) and 0 <= it.score <= 4 for it in items)
        assert len({it.uid for it in items}) == n


def test_shared_hoc():
    docs = read_task_file(need(DATA / "hoc" / "hoc_train_docs.jsonl"), "hoc")
    assert len(docs) == 1321
    assert sum(1 for d in docs if not d.labels) == 272  # abstracts without a hallmark, kept as BLURB keeps them
    assert Counter(len(d.labels) for d in docs)[1] == 608
    sentences = read_task_file(need(DATA / "hoc" / "biogpt_train.tsv"), "hoc")
    assert len(sentences) == 9961 and sum(1 for s in sentences if not s.labels) == 7011
