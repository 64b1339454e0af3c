"""Readers of the generative relation extraction corpora (bc5cdr_re, kd_dti_re, ddi_re) and of MeQSum: own
fixtures in each layout (good and bad records), then the shared files' counts against their SOURCE.md."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from megatron_biomed.data.tasks import ReadReport, TaskDataError, read_task_file
from megatron_biomed.data.tasks.relation_text import TEMPLATES, parse_triples, relation_pairs, target_sentence

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT.parent / "shared" / "data"

# A PubTator file of our own making in the CDR layout: a composite mention with per-id names, a mention with two
# ids and no names (names nothing), two names of one id (the longer wins), a CID pair without a chemical name.
PUBTATOR = """\
11|t|Drug A induced hemorrhagic cystitis.
11|a|Drug A and DA caused choreoathetosis and hemorrhagic cystitis.
11\t0\t6\tDrug A\tChemical\tC1
11\t35\t37\tDA\tChemical\tC1
11\t15\t35\themorrhagic cystitis\tDisease\tD1|D2\themorrhagic|cystitis
11\t48\t63\tchoreoathetosis\tDisease\tD3|D4
11\tCID\tC1\tD1
11\tCID\tC1\tD2
11\tCID\tC9\tD1

12|t|Nothing here
12|a|No relation.
"""


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_pubtator_cid_names_and_target(tmp_path):
    docs = read_task_file(write(tmp_path, "cdr.txt", PUBTATOR), "bc5cdr_re")
    assert [d.uid for d in docs] == ["11", "12"]
    d = docs[0]
    assert d.title == "Drug A induced hemorrhagic cystitis." and d.abstract.startswith("Drug A and DA")
    assert d.head_names == (("drug a", "C1"), ("da", "C1"))
    assert d.tail_names == (("hemorrhagic", "D1"), ("cystitis", "D2"))  # D3|D4 without names: none
    assert [(t.head, t.tail, t.head_id, t.tail_id) for t in d.triples] == [
        ("drug a", "hemorrhagic", "C1", "D1"), ("drug a", "cystitis", "C1", "D2"), ("", "hemorrhagic", "C9", "D1")]
    assert target_sentence(d, TEMPLATES["bc5cdr_re"]) == (
        "the relation between drug a and hemorrhagic exists; the relation between drug a and cystitis exists.")
    report = ReadReport("")
    assert [doc.uid for _, _, doc in relation_pairs(docs, "bc5cdr_re", report)] == ["11"]
    assert report.skipped == {"no triple to write (BioGPT leaves these out)": 1}


@pytest.mark.parametrize("bad, line, reason", [
    ("11\tx\t6\tDrug A\tChemical\tC1", 3, "bad offsets"),
    ("11\tCID\tC1", 3, "bad CID line"),
    ("11\t0\t6\tDrug A", 3, "bad mention line"),
    ("11\tCID\tC1\tD1\textra", 3, "bad CID line"),
    ("13\t0\t6\tDrug A\tChemical\tC1", 3, "PMID changes inside a document"),
])  # fmt: skip
def test_pubtator_bad_lines_name_the_line_and_skip_the_document(tmp_path, bad, line, reason):
    lines = PUBTATOR.split("\n")
    lines[2] = bad
    path = write(tmp_path, "bad.txt", "\n".join(lines))
    with pytest.raises(TaskDataError, match=rf"bad.txt:{line}: ") as e:
        read_task_file(path, "bc5cdr_re")
    assert e.value.reason == reason
    report = ReadReport(str(path))
    docs = read_task_file(path, "bc5cdr_re", skip_bad=True, report=report)
    assert [d.uid for d in docs] == ["12"] and report.skipped == {reason: 1}
    title_missing = write(tmp_path, "nt.txt", "\n".join(PUBTATOR.split("\n")[1:]))
    with pytest.raises(TaskDataError, match=r"nt.txt:1: .*no '\|t\|'"):
        read_task_file(title_missing, "bc5cdr_re")


def test_biogpt_json_documents_and_bad_keys(tmp_path):
    good = {
        "p1": {"title": "T", "abstract": "", "pmid": "p1",  # a title alone is a document (KD-DTI PMID 1119107)
               "triples": "[{'drug': 'DrugBank####DB1', 'target': 'DrugBank####BE1', 'interaction': 'Inhibitor'}]"},
        "p2": {"title": "U", "abstract": "V", "triples": []},
    }  # fmt: skip
    docs = read_task_file(write(tmp_path, "kd.json", json.dumps(good, indent=1)), "kd_dti_re")
    assert [(d.uid, len(d.triples)) for d in docs] == [("p1", 1), ("p2", 0)]
    assert target_sentence(docs[0], TEMPLATES["kd_dti_re"]) == (
        "the interaction between drugbank####db1 and drugbank####be1 is inhibitor.")
    bad = {"d1": {"abstract": "x", "triples": [{"drug": "a", "target": "b", "interaction": "int"}]},
           "d2": {"abstract": "x", "triples": [{"drug": "a", "interaction": "int"}]},
           "d3": {"abstract": "", "triples": []},
           "d4": {"abstract": "x"},
           "d5": ["not an object"]}  # fmt: skip
    path = write(tmp_path, "ddi.json", json.dumps(bad, indent=1))
    with pytest.raises(TaskDataError, match=r"ddi.json:\d+: document 'd2': triple 0: missing 'target'"):
        read_task_file(path, "ddi_re")
    report = ReadReport(str(path))
    docs = read_task_file(path, "ddi_re", skip_bad=True, report=report)
    assert [d.uid for d in docs] == ["d1"]
    assert report.skipped == {"missing 'target'": 1, "empty 'abstract'": 1, "missing 'triples'": 1, "bad document": 1}
    assert report.first_errors[0].startswith(f"{path}:12: document 'd2'")  # the key's line


def test_meqsum_layouts_and_bad_rows(tmp_path):
    rows = [{"file": "a.txt", "chq": "SUBJECT: x\nMESSAGE: y", "summary": "What is x?"},
            {"q_id": "3", "question": "q?", "summary": "s?", "question_focus": "f"},
            {"chq": "c"}, {"summary": "s"}, {"chq": " ", "summary": "s"}]  # fmt: skip
    path = write(tmp_path, "m.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(TaskDataError, match=r"m.jsonl:3: missing 'summary'"):
        read_task_file(path, "meqsum")
    report = ReadReport(str(path))
    items = read_task_file(path, "meqsum", skip_bad=True, report=report)
    assert [(i.uid, i.source, i.summary) for i in items] == [("a.txt", "SUBJECT: x\nMESSAGE: y", "What is x?"),
                                                              ("3", "q?", "s?")]  # fmt: skip
    assert report.skipped == {"missing 'summary'": 1, "no 'chq' or 'question'": 1, "empty 'chq'": 1}


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared data file missing: {path}")
    return path


@pytest.mark.parametrize("fmt, rel, docs, triples, no_triples", [
    # pubmed_abstracts/SOURCE.md: 500 train / 499 dev documents; CID lines counted in the files (1,038 / 1,006)
    ("bc5cdr_re", "pubmed_abstracts/bc5cdr/CDR_TrainingSet.PubTator.txt", 500, 1038, 0),
    ("bc5cdr_re", "pubmed_abstracts/bc5cdr/CDR_DevelopmentSet.PubTator.txt", 499, 1006, 0),
    ("kd_dti_re", "kd_dti_re/valid.json", 975, 2225, 0),  # kd_dti_re/SOURCE.md
    ("ddi_re", "ddi/train.json", 659, 3548, 194),  # ddi/SOURCE.md
    ("ddi_re", "ddi/valid.json", 49, 301, 9),
])  # fmt: skip
def test_shared_relation_files(fmt, rel, docs, triples, no_triples):
    path = need(DATA / rel)
    report = ReadReport(str(path))
    got = read_task_file(path, fmt, report=report)
    assert (len(got), sum(len(d.triples) for d in got), sum(not d.triples for d in got)) == (docs, triples, no_triples)
    assert report.read == docs and report.skipped == {}
    pairs = relation_pairs(got, fmt)
    template = TEMPLATES[fmt]
    if fmt == "kd_dti_re":  # SOURCE.md says DrugBank ids: true of 820 triples (both ids); 1,405 have both names
        ids = [t.head.startswith("DrugBank####") + t.tail.startswith("DrugBank####") for d in got for t in d.triples]
        assert (ids.count(2), ids.count(0), len(ids)) == (820, 1405, 2225)
    for text, target, doc in pairs[:50]:
        assert text == text.lower() and target.endswith(".")
        parsed = parse_triples(target, template)
        written = [t for t in doc.triples if t.head and t.tail]
        assert len(parsed) == len(written)


@pytest.mark.parametrize("rel, n", [("meqsum/meqsum_1000.jsonl", 998), ("meqsum/mediqa_qs_2021_validation.jsonl", 50)])
def test_shared_meqsum(rel, n):
    path = need(DATA / rel)
    items = read_task_file(path, "meqsum")
    assert len(items) == n and all(i.source.strip() and i.summary.strip() for i in items)
