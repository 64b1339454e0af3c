"""Readers for relation extraction as sentence classification: ChemProt (SciBERT's JSON lines) and GAD
(BioBERT's TSV). Each sentence with its marked (or masked) argument pair becomes a :class:`ClassificationItem`
whose ``context`` is the sentence as given (markers or masks kept: the model reads them) and ``question`` is
empty.

ChemProt, allenai/scibert data/text_classification/chemprot/{train,dev}.txt @ 06793f7: ``{"text", "label",
"metadata"}``, the two arguments marked ``<< ... >>`` and ``[[ ... ]]`` (SciBERT's markers, untyped). The label
is one of the 13 fine-grained ChemProt relations of the five evaluated groups CPR:3, 4, 5, 6, 9; the release
holds positive pairs only (no ``false`` pairs). BLURB instead classifies every co-occurring chemical-protein
pair of a sentence into CPR:3, CPR:4, CPR:5, CPR:6, CPR:9 or ``false``, with the arguments masked as
``@CHEMICAL$`` / ``@GENE$``, and scores micro F1 over the five CPR classes (arXiv 2007.15779 §2.3.3, Table 3).
On this release there is no negative class to leave out: micro F1 over its labels equals accuracy, and it is not
comparable with BLURB's ChemProt number (no negatives to reject, finer classes). :data:`CHEMPROT_CPR_GROUP`
maps each label to its BLURB class.

GAD, dmis-lab BioBERT RE datasets (copied in BioMedBERT/biomedbert datasets/RE/GAD/1/train.tsv @ 9e5e101):
``sentence<TAB>label``, no header, the gene and the disease masked as ``@GENE$`` / ``@DISEASE$`` (the masking
BLURB's preprocessing uses), label ``0`` (no association) or ``1``. BLURB scores GAD by F1 of the positive
class (micro F1 over the one positive class; Table 3). The staged file is fold 1's train split, of which BLURB's GAD
dev set is a subset (BLURB's dev indices are not published on GitHub): a held-out check on it must set rows
aside from training itself; the tests read it whole and learn on fixtures of their own.

DDI as sentence classification (BLURB: every drug pair of a sentence, labels advise / effect / mechanism / int /
``DDI-false``) has no reader: the staged DDI corpus is BioGPT's document-level form (microsoft/BioGPT
data/DDI/raw @ 648f7d6: an abstract and its positive triples, no sentence boundaries, no mention offsets, no
negative pairs), from which neither the candidate pairs nor BLURB's negatives can be rebuilt faithfully. DDI is
scored generatively (eval/generation.py ``ddi_re``) instead.
"""

from __future__ import annotations

import os

from megatron_biomed.data.tasks._fields import BadRecord, check_text, json_kind, short
from megatron_biomed.data.tasks.errors import ReadReport
from megatron_biomed.data.tasks.records import ClassificationItem
from megatron_biomed.data.tasks.source_files import Collector, iter_jsonl, iter_tsv

# The ChemProt relation types of the evaluated groups, grouped and ordered as the BioCreative VI ChemProt
# guidelines list them (Krallinger et al. 2017, ChemProt track overview, Table 1): CPR:3 up-regulation, CPR:4
# down-regulation, CPR:5 agonist, CPR:6 antagonist, CPR:9 substrate/product. Our choice of order: SciBERT's
# files fix none (its reader builds the label vocabulary from the data).
CHEMPROT_CPR_GROUP = {
    "UPREGULATOR": "CPR:3", "ACTIVATOR": "CPR:3", "INDIRECT-UPREGULATOR": "CPR:3",
    "DOWNREGULATOR": "CPR:4", "INHIBITOR": "CPR:4", "INDIRECT-DOWNREGULATOR": "CPR:4",
    "AGONIST": "CPR:5", "AGONIST-ACTIVATOR": "CPR:5", "AGONIST-INHIBITOR": "CPR:5",
    "ANTAGONIST": "CPR:6",
    "SUBSTRATE": "CPR:9", "PRODUCT-OF": "CPR:9", "SUBSTRATE_PRODUCT-OF": "CPR:9",
}  # fmt: skip
CHEMPROT_LABELS = tuple(CHEMPROT_CPR_GROUP)
# BLURB's ChemProt classes (arXiv 2007.15779 §2.3.3): the five evaluated groups and the negative class ``false``
# left out of micro F1 (as BLUE's ChemProt evaluation does: ncbi-nlp/BLUE_Benchmark blue/eval_rel.py @ 2b3dc24).
BLURB_CHEMPROT_LABELS = ("CPR:3", "CPR:4", "CPR:5", "CPR:6", "CPR:9", "false")
# GAD's labels as BioBERT's files write them: 0 = no gene-disease association (the negative class), 1 = one.
GAD_LABELS = ("0", "1")
GAD_MASKS = ("@GENE$", "@DISEASE$")


def _marked(text: str, opening: str, closing: str) -> None:
    start = text.find(opening)
    if start < 0 or text.count(opening) != 1 or text.find(closing, start + len(opening)) < 0:
        pair = f"{opening.strip()} ... {closing.strip()}"
        raise BadRecord(
            "bad argument markers",
            f"'text' must mark its two arguments once each, << ... >> and [[ ... ]]; {pair} is missing or repeated "
            f"in {short(text)}",
        )


def _chemprot_item(row: dict, uid: str) -> ClassificationItem:
    if "text" not in row:
        raise BadRecord("missing 'text'")
    text = check_text(row["text"], "'text'")
    # With their spaces: chemical names may hold "[[" themselves (train line 1543: "6[[(3-iodophenyl)").
    _marked(text, "<< ", " >>")
    _marked(text, "[[ ", " ]]")
    if "label" not in row:
        raise BadRecord("missing 'label'")
    label = row["label"]
    if not isinstance(label, str):
        raise BadRecord("bad label", f"'label' must be a string, got {json_kind(label)}")
    if label.strip() not in CHEMPROT_LABELS:
        raise BadRecord("unknown label", f"label {short(label)} is not one of {', '.join(CHEMPROT_LABELS)}")
    return ClassificationItem(question="", context=text, label=CHEMPROT_LABELS.index(label.strip()),
                              label_names=CHEMPROT_LABELS, uid=uid)  # fmt: skip


def read_chemprot(path: str | os.PathLike, *, skip_bad: bool = False,
                  report: ReadReport | None = None) -> list[ClassificationItem]:  # fmt: skip
    """ChemProt sentences in SciBERT's JSON lines (module docstring): one item per line over
    :data:`CHEMPROT_LABELS`, ``uid`` = ``path:line``."""
    col = Collector(path, skip_bad, report)
    items = []
    for line, row in iter_jsonl(col):
        try:
            items.append(_chemprot_item(row, f"{col.path}:{line}"))
        except BadRecord as e:
            col.bad_record(line, e)
            continue
        col.ok()
    return items


def _gad_item(fields: list[str], uid: str) -> ClassificationItem:
    if len(fields) != 2:
        raise BadRecord("wrong number of columns", f"expected 2 tab-separated columns (sentence, label), "
                                                   f"got {len(fields)}")  # fmt: skip
    sentence, label = fields
    check_text(sentence, "sentence")
    missing = [m for m in GAD_MASKS if sentence.count(m) != 1]
    if missing:
        raise BadRecord("bad entity masks", f"the sentence must hold {' and '.join(GAD_MASKS)} once each; "
                                            f"{', '.join(missing)} is not there once: {short(sentence)}")  # fmt: skip
    if label.strip() not in GAD_LABELS:
        if sentence.strip() == "sentence" or label.strip() == "label":
            raise BadRecord("header line", "a header line; GAD's files have none (remove it)")
        raise BadRecord("unknown label", f"label {short(label)} is not 0 or 1")
    return ClassificationItem(question="", context=sentence, label=GAD_LABELS.index(label.strip()),
                              label_names=GAD_LABELS, uid=uid)  # fmt: skip


def read_gad(path: str | os.PathLike, *, skip_bad: bool = False,
             report: ReadReport | None = None) -> list[ClassificationItem]:  # fmt: skip
    """GAD sentences in BioBERT's TSV (module docstring): one item per line over :data:`GAD_LABELS`,
    ``uid`` = ``path:line``."""
    col = Collector(path, skip_bad, report)
    items = []
    for line, fields in iter_tsv(col):
        try:
            items.append(_gad_item(fields, f"{col.path}:{line}"))
        except BadRecord as e:
            col.bad_record(line, e)
            continue
        col.ok()
    return items
