"""BioGPT's target sentences for generative relation extraction, both ways: a document's triples written as the
sentence a model is fine-tuned to generate, and a generated sentence parsed back into triples.

Everything here is BioGPT's "relis" format (microsoft/BioGPT @ 648f7d6503c038b44e70b7510bf431c7be94e891):
* source text (examples/RE-*/rebuild_data.py ``loader``): BC5CDR and KD-DTI ``title + " " + abstract`` when the
  title ends with a non-word character, else ``title + ". " + abstract``; DDI ``abstract.strip()`` with newlines
  as spaces; then lower-cased.
* target (``build_target_seq_relis``): one sentence per triple, joined by "; ", closed by "." --
  BC5CDR "the relation between {chemical} and {disease} exists" (names as the reader gives them, already
  lower-cased), KD-DTI and DDI "the interaction between {drug} and {target} is {interaction}" (each lower-cased).
  KD-DTI and DDI triples are first ordered by where the drug's name (as given, not lower-cased) is found in the
  lower-cased text (``sort_triples``: ``str.find``, so a capitalised name sorts first, at -1; stable);
  BC5CDR keeps the PubTator order.
* parse (examples/RE-*/postprocess.py): the line stripped and one final "." dropped; everything up to the last
  of the first matching prefix pattern ("learned<k> " prompt tokens, "in conclusion ,"/"in conclusion,",
  "we can conclude that", "we have that") removed; split at ";" (BC5CDR) or "; " (KD-DTI, DDI); each piece
  matched from its start with the template's regex (greedy groups); pieces that do not match are dropped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from megatron_biomed.data.tasks.errors import ReadReport
from megatron_biomed.data.tasks.records import RelationDocument, RelationTriple


@dataclass(frozen=True)
class RelationTemplate:
    """How one corpus's triples are written and read back (see the module docstring for the sources)."""

    name: str
    sentence: str  # with {head}, {relation}, {tail}
    pattern: re.Pattern  # groups: see ``group_order``
    group_order: tuple[int, int, int]  # indices of (head, relation, tail) among the pattern's groups; -1: fixed
    fixed_relation: str  # the relation of every parsed triple when the sentence does not name one
    split: str  # regex the generation is split at
    strip_piece: bool  # BC5CDR strips each piece before matching; KD-DTI / DDI do not
    prefixes: tuple[str, ...]
    sort_by_head: bool
    text_with_title: bool


# RE-BC5CDR/postprocess.py ``prefix``: "in conclusion ," (with a space); RE-DTI, RE-DDI: "in conclusion,".
_LEARNED = r"(learned[0-9]+ )+"
TEMPLATES: dict[str, RelationTemplate] = {
    "bc5cdr_re": RelationTemplate(
        "bc5cdr_re", "the relation between {head} and {tail} exists",
        re.compile(r"the relation between (.*) and (.*) exists"), (0, -1, 1), "CID", r";", True,
        (_LEARNED, "in conclusion ,", "we can conclude that", "we have that"), False, True,
    ),
    "kd_dti_re": RelationTemplate(
        "kd_dti_re", "the interaction between {head} and {tail} is {relation}",
        re.compile(r"the interaction between (.*) and (.*) is (.*)"), (0, 2, 1), "", r"; ", False,
        (_LEARNED, "we can conclude that", "we have that", "in conclusion,"), True, True,
    ),
    "ddi_re": RelationTemplate(
        "ddi_re", "the interaction between {head} and {tail} is {relation}",
        re.compile(r"the interaction between (.*) and (.*) is (.*)"), (0, 2, 1), "", r"; ", False,
        (_LEARNED, "we can conclude that", "we have that", "in conclusion,"), True, False,
    ),
}  # fmt: skip


def source_text(doc: RelationDocument, template: RelationTemplate) -> str:
    """The document as BioGPT feeds it to the model (lower-cased)."""
    if not template.text_with_title:
        return doc.abstract.strip().replace("\n", " ").lower()
    sep = " " if re.search(r"\W$", doc.title) else ". "
    return (doc.title + sep + doc.abstract).lower()


def writable_triples(doc: RelationDocument) -> list[RelationTriple]:
    """The triples a target sentence can name (both names known)."""
    return [t for t in doc.triples if t.head and t.tail]


def target_sentence(doc: RelationDocument, template: RelationTemplate) -> str:
    """The sentence BioGPT fine-tunes on for ``doc`` ("" when no triple can be written)."""
    triples = writable_triples(doc)
    if template.sort_by_head:
        text = source_text(doc, template)
        triples = sorted(triples, key=lambda t: text.find(t.head))
    lower = template.sort_by_head  # KD-DTI / DDI lower-case here; BC5CDR names come lower-cased from the reader
    parts = []
    for t in triples:
        head, rel, tail = (s.lower() for s in (t.head, t.relation, t.tail)) if lower else (t.head, t.relation, t.tail)
        parts.append(template.sentence.format(head=head, relation=rel, tail=tail))
    return "; ".join(parts) + "." if parts else ""


def strip_prefix(line: str, prefixes: Sequence[str]) -> str:
    """The text after the first of ``prefixes`` (regexes, tried in order) that occurs (its last occurrence)."""
    for p in prefixes:
        if re.search(p, line) is not None:
            return re.split(p, line)[-1].strip()
    return line


def parse_triples(generation: str, template: RelationTemplate) -> list[tuple[str, str, str]]:
    """``(head, relation, tail)`` of each sentence of ``generation`` that matches the template, in order,
    duplicates kept; [] when none does (BioGPT's "failed" line)."""
    line = generation.strip()
    if line.endswith("."):
        line = line[:-1]
    out = []
    for piece in re.split(template.split, strip_prefix(line, template.prefixes)):
        m = template.pattern.match(piece.strip() if template.strip_piece else piece)
        if m is None:
            continue
        groups = [g.strip() for g in m.groups()]
        h, r, t = (groups[i] if i >= 0 else template.fixed_relation for i in template.group_order)
        out.append((h, r, t))
    return out


def relation_pairs(docs, fmt: str, report: ReadReport | None = None) -> list[tuple[str, str, object]]:
    """(prompt text, target sentence, document) of each document BioGPT keeps: those with a writable triple
    (rebuild_data.py ``loader`` leaves out documents without one); the others are counted in ``report``."""
    template = TEMPLATES[fmt]
    out = []
    for d in docs:
        target = target_sentence(d, template)
        if not target:
            if report is not None:
                report.count_skip("no triple to write (BioGPT leaves these out)")
            continue
        out.append((source_text(d, template), target, d))
    return out
