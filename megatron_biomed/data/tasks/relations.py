"""Readers for generative end-to-end relation extraction corpora, as BioGPT prepares them
(microsoft/BioGPT examples/RE-{BC5CDR,DTI,DDI} @ 648f7d6503c038b44e70b7510bf431c7be94e891):

* ``bc5cdr_re``: BioCreative V CDR in PubTator (``pmid|t|title``, ``pmid|a|abstract``, mention lines
  ``pmid<TAB>start<TAB>end<TAB>text<TAB>type<TAB>id[<TAB>names]``, relation lines ``pmid<TAB>CID<TAB>chem<TAB>dis``).
  Each CID pair becomes a triple (chemical, "CID", disease) with its MeSH ids; the names are BioGPT's: every
  mention lower-cased is a name of its id (``chemical2id`` / ``disease2id`` of their data/BC5CDR/raw/*.json), and
  the name of an id is its longest name (RE-BC5CDR/rebuild_data.py ``unify_ent2id(method='max')``: the first of
  the longest). A mention with several ids and no per-id names (``D002819|D001264``) names nothing; a composite
  mention's 7th column gives one name per id. A CID pair whose chemical or disease has no name keeps its ids and
  an empty name: it is scored but cannot be written as a target sentence (BioGPT's relis files leave it out).
  These rules reproduce BioGPT's data/BC5CDR/raw/valid.json from CDR_DevelopmentSet.PubTator.txt: checked once
  by hand on the 499 shared documents, the same relations in all and the same name maps in 498 (PMID 15096016's
  "hyper- or dyskinetic", two ids without a names column, is named "hyperkinetic" / "dyskinetic" there).
* ``kd_dti_re``: KD-DTI in BioGPT's raw JSON (object keyed by PMID: ``title``, ``abstract``, ``triples`` = a
  list (or its Python repr) of ``{drug, target, interaction}``).
* ``ddi_re``: DDI-2013 in the same JSON layout, ``abstract`` only (no title); ``modify`` is ignored.

Documents without any triple are returned (``triples == ()``); BioGPT leaves them out of its training and
evaluation files (rebuild_data.py ``loader``), and so do the SFT tool and the generation tasks.
"""

from __future__ import annotations

import ast
import os

from megatron_biomed.data.tasks._fields import BadRecord, json_kind, optional_text, require_text, short
from megatron_biomed.data.tasks.errors import ReadReport
from megatron_biomed.data.tasks.records import RelationDocument, RelationTriple
from megatron_biomed.data.tasks.source_files import Collector, JsonDocument, open_text

# ---- BC5CDR (PubTator) ---------------------------------------------------------------------------------------


class _PubTatorDoc:
    def __init__(self, pmid: str, line: int) -> None:
        self.pmid, self.line = pmid, line
        self.title: str | None = None
        self.abstract: str | None = None
        self.names: dict[str, dict[str, str]] = {"Chemical": {}, "Disease": {}}
        self.cid: list[tuple[str, str]] = []


def _mention(doc: _PubTatorDoc, fields: list[str]) -> None:
    if len(fields) not in (6, 7):
        raise BadRecord("bad mention line", f"a mention line has 6 or 7 tab-separated fields, got {len(fields)}")
    _, start, end, text, kind, ids = fields[:6]
    if not (start.isdigit() and end.isdigit()):
        raise BadRecord("bad offsets", f"mention offsets {short(start)}, {short(end)} are not integers")
    if kind not in doc.names:
        return  # other entity types name nothing that a CID relation refers to
    names = doc.names[kind]
    if len(fields) == 7:  # composite mention: one name per id (e.g. "cardiovascular depression|respiratory ...")
        parts, part_ids = fields[6].split("|"), ids.split("|")
        if len(parts) == len(part_ids):
            for name, i in zip(parts, part_ids):
                names[name.lower()] = i
        return
    if "|" not in ids:  # one mention under several ids without per-id names names none of them (as BioGPT's data)
        names[text.lower()] = ids


def _longest_names(name2id: dict[str, str]) -> dict[str, str]:
    """id -> its longest name, the first of the longest (BioGPT's ``unify_ent2id(method='max')``)."""
    id2name: dict[str, str] = {}
    for name, i in name2id.items():
        if i not in id2name or len(name) > len(id2name[i]):
            id2name[i] = name
    return id2name


def _bc5cdr_document(doc: _PubTatorDoc) -> RelationDocument:
    if doc.title is None or doc.abstract is None:
        raise BadRecord("missing title or abstract", f"document {doc.pmid} has no '|t|' or no '|a|' line")
    chem, dis = _longest_names(doc.names["Chemical"]), _longest_names(doc.names["Disease"])
    triples = tuple(RelationTriple(chem.get(c, ""), "CID", dis.get(d, ""), c, d) for c, d in doc.cid)
    return RelationDocument(doc.pmid, doc.title, doc.abstract, triples,
                            tuple(doc.names["Chemical"].items()), tuple(doc.names["Disease"].items()))  # fmt: skip


def read_bc5cdr_re(path: str | os.PathLike, *, skip_bad: bool = False,
                   report: ReadReport | None = None) -> list[RelationDocument]:  # fmt: skip
    """BC5CDR chemical-induced-disease relations from a PubTator file, one :class:`RelationDocument` per PMID
    (documents separated by blank lines). A bad line makes its whole document bad (``path:line`` of the line)."""
    col = Collector(path, skip_bad, report)
    out: list[RelationDocument] = []
    doc: _PubTatorDoc | None = None
    bad: tuple[int, BadRecord] | None = None

    def close() -> None:
        nonlocal doc, bad
        if doc is not None:
            try:
                if bad is not None:
                    raise bad[1]
                out.append(_bc5cdr_document(doc))
                col.ok()
            except BadRecord as e:
                col.bad_record(bad[0] if bad else doc.line, e)
        doc, bad = None, None

    with open_text(path) as f:
        for n, raw in enumerate(f, 1):
            line = raw.rstrip("\n").rstrip("\r")
            if not line.strip():
                close()
                continue
            pmid = line.split("|", 1)[0] if "|" in line.split("\t", 1)[0] else line.split("\t", 1)[0]
            if doc is None:
                doc = _PubTatorDoc(pmid, n)
            if bad is not None:
                continue
            try:
                if pmid != doc.pmid:
                    raise BadRecord(
                        "PMID changes inside a document",
                        f"PMID {short(pmid)} inside document {doc.pmid} (no blank line between them?)",
                    )
                if line.startswith(f"{pmid}|t|"):
                    doc.title = line[len(pmid) + 3 :]
                elif line.startswith(f"{pmid}|a|"):
                    doc.abstract = line[len(pmid) + 3 :]
                else:
                    fields = line.split("\t")
                    if len(fields) >= 2 and fields[1] == "CID":
                        if len(fields) != 4:
                            raise BadRecord(
                                "bad CID line",
                                f"a CID line is pmid<TAB>CID<TAB>chemical<TAB>disease, got {len(fields)} fields",
                            )
                        doc.cid.append((fields[2], fields[3]))
                    else:
                        _mention(doc, fields)
            except BadRecord as e:
                bad = (n, e)
        close()
    return out


# ---- KD-DTI and DDI (BioGPT's raw JSON) ------------------------------------------------------------------------


def _triples(value: object) -> tuple[RelationTriple, ...]:
    if isinstance(value, str):  # KD-DTI as some copies hold it: the list's Python repr
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            raise BadRecord("bad 'triples'", "'triples' is a string that is not a list literal") from None
    if value is None:
        return ()
    if not isinstance(value, list):
        raise BadRecord("bad 'triples'", f"'triples' must be a list, got {json_kind(value)}")
    out = []
    for i, t in enumerate(value):
        if not isinstance(t, dict):
            raise BadRecord("bad triple", f"triple {i} must be an object, got {json_kind(t)}")
        try:
            drug, target, rel = (require_text(t, k) for k in ("drug", "target", "interaction"))
        except BadRecord as e:
            raise BadRecord(e.reason, f"triple {i}: {e.problem}") from None
        out.append(RelationTriple(drug, rel, target))
    return tuple(out)


def _read_biogpt_json(path, skip_bad: bool, report: ReadReport | None, with_title: bool) -> list[RelationDocument]:
    col = Collector(path, skip_bad, report)
    doc = JsonDocument(col)
    pos, char = doc.root()
    if char != "{":
        raise col.fatal(doc.line_at(pos), f"expected a JSON object keyed by document id, found {char!r}")
    out = []
    for key, key_pos, _, value in doc.members(pos, top_level=True):
        line = doc.line_at(key_pos)
        try:
            if not isinstance(value, dict):
                raise BadRecord("bad document", f"document {short(key)} must be an object, got {json_kind(value)}")
            if "triples" not in value:
                raise BadRecord("missing 'triples'")
            if with_title:  # a KD-DTI document may be a title alone (empty abstract), as PMID 1119107
                title, abstract = optional_text(value, "title"), optional_text(value, "abstract")
                if not (title.strip() or abstract.strip()):
                    raise BadRecord("empty text", "both 'title' and 'abstract' are empty")
            else:
                title, abstract = "", require_text(value, "abstract")
            out.append(RelationDocument(key, title, abstract, _triples(value["triples"])))
        except BadRecord as e:
            col.bad_record(line, e, prefix=f"document {short(key)}: ")
            continue
        col.ok()
    return out


def read_kd_dti_re(path: str | os.PathLike, *, skip_bad: bool = False,
                   report: ReadReport | None = None) -> list[RelationDocument]:  # fmt: skip
    """KD-DTI documents (title, abstract, drug-target-interaction triples) from BioGPT's raw JSON. In the
    public valid file 820 of the 2,225 triples give DrugBank ids (``DrugBank####DB08813``) for both drug and
    target instead of names (the other 1,405 give names): a target sentence then asks the model to write ids that
    the text does not contain, so such triples can only be learnt by heart, and a generated name never matches
    them."""
    return _read_biogpt_json(path, skip_bad, report, with_title=True)


def read_ddi_re(path: str | os.PathLike, *, skip_bad: bool = False,
                report: ReadReport | None = None) -> list[RelationDocument]:  # fmt: skip
    """DDI-2013 documents (text, drug-drug-interaction triples) from BioGPT's raw JSON."""
    return _read_biogpt_json(path, skip_bad, report, with_title=False)
