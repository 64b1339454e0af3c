"""Readers for named-entity recognition: CoNLL-style BIO files (BLURB's NER sets) and PubTator documents with
character-offset mentions (BC5CDR, NCBI-disease), both as :class:`TaggedSentence` (words, one BIO tag each).

PubTator text is turned into words by :func:`split_words` and tagged per entity type; nested and overlapping
mentions cannot all be BIO-tagged, so the longest is kept (ties: the one starting first) and the others are
counted in the :class:`ReadReport` as ``"overlapping mention dropped (longest kept)"``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence

from megatron_biomed.data.tasks._fields import BadRecord, short
from megatron_biomed.data.tasks.errors import ReadReport, TaskDataError
from megatron_biomed.data.tasks.records import TaggedSentence
from megatron_biomed.data.tasks.source_files import Collector, has_bad_bytes, open_text

# IOB2 tags as the MTL-Bioinformatics-2016 files write them (B-Disease, I-Chemical, O) and the BioBERT JNLPBA
# copy's untyped B / I / O.
TAG = re.compile(r"O|[BI](-\S+)?")
# Words of PubTator text. Our choice: runs of letters/digits and single punctuation marks, the granularity of the
# MTL-Bioinformatics-2016 IOB files (hyphens, slashes and brackets are words of their own there).
WORD = re.compile(r"\w+|[^\w\s]")
SENTENCE_END = frozenset(".?!")
UNITS = ("sentence", "document")
OVERLAP = "overlapping mention dropped (longest kept)"


def check_tag(tag: str) -> str:
    if not TAG.fullmatch(tag):
        raise BadRecord("bad tag", f"tag {short(tag)} is not a BIO tag (O, B, I, B-Type or I-Type)")
    return tag


def first_letter(tag: str) -> str:
    """``B-Disease`` -> ``B``: BLURB's NER sets keep only the position letter (one entity type per corpus).
    shared/data/bio_ner/SOURCE.md; the BigBio BLURB loader does the same (bigscience-workshop/biomedical
    bigbio/hub/hub_repos/blurb/blurb.py ``_load_iob`` @ 62b92ef, which further turns B into I; we keep B)."""
    return tag[0]


def _lines(col: Collector) -> Iterator[tuple[int, str]]:
    with open_text(col.path) as f:
        line = 0
        try:
            for line, text in enumerate(f, 1):
                yield line, text.rstrip("\r\n")
        except (OSError, EOFError) as e:
            raise col.fatal(line + 1, f"cannot read the file past this line ({e})") from e


# ---- CoNLL ---------------------------------------------------------------------------------------------------


def read_conll(path: str | os.PathLike, *, skip_bad: bool = False, report: ReadReport | None = None,
               first_letter_only: bool = False) -> list[TaggedSentence]:  # fmt: skip
    """Sentences of a CoNLL/BIO file: one ``token<TAB>tag`` line per word (the tag is the last tab-separated
    field), a blank line between sentences. ``first_letter_only``: keep only B / I / O of each tag, as BLURB does.
    A sentence with a bad line (no tab, an empty token, a tag that is not B/I/O-shaped) is bad as a whole; its
    ``uid`` is ``path:line`` of its first word."""
    col = Collector(path, skip_bad, report)
    out: list[TaggedSentence] = []
    words: list[str] = []
    tags: list[str] = []
    start, bad = 0, None

    def flush():
        nonlocal words, tags, bad
        if bad is not None:
            col.bad(*bad)
        elif words:
            out.append(TaggedSentence(tuple(words), tuple(tags), f"{col.path}:{start}"))
            col.ok()
        words, tags, bad = [], [], None

    for line, text in _lines(col):
        if not text.strip():
            flush()
            continue
        if not words and bad is None:
            start = line
        if bad is not None:
            continue
        try:
            if has_bad_bytes(text):
                raise BadRecord("invalid UTF-8", "line is not valid UTF-8")
            fields = text.split("\t")
            if len(fields) < 2 or not fields[0].strip():
                raise BadRecord("not token<TAB>tag", f"expected token<TAB>tag, got {short(text)}")
            tag = check_tag(fields[-1].strip())
        except BadRecord as e:
            bad = (line, e.reason, e.problem)
            continue
        words.append(fields[0].strip())
        tags.append(first_letter(tag) if first_letter_only else tag)
    flush()
    return out


# ---- PubTator ------------------------------------------------------------------------------------------------

_TITLE = re.compile(r"([^|\t]+)\|t\|(.*)")
_ABSTRACT = re.compile(r"([^|\t]+)\|a\|(.*)")


class _Doc:
    def __init__(self, pmid: str, line: int, title: str):
        self.pmid, self.line, self.title, self.abstract = pmid, line, title, None
        self.mentions: list[tuple[int, int, str, int]] = []  # start, end, type, line
        self.bad: tuple[int, str, str] | None = None

    @property
    def text(self) -> str:
        return f"{self.title} {self.abstract or ''}"


def _mention(doc: _Doc, fields: list[str]) -> tuple[int, int, str] | None:
    """(start, end, type) of a mention line; None for a relation line (``pmid<TAB>CID<TAB>id<TAB>id``)."""
    if len(fields) == 4 and not fields[1].strip().isdigit():
        return None  # BC5CDR's chemical-induced-disease relations: not NER
    if len(fields) < 5:
        raise BadRecord("not a mention", "expected pmid<TAB>start<TAB>end<TAB>text<TAB>type[<TAB>id...]")
    if fields[0] != doc.pmid:
        raise BadRecord("PMID differs", f"mention of PMID {short(fields[0])} inside document {doc.pmid}")
    try:
        start, end = int(fields[1]), int(fields[2])
    except ValueError:
        raise BadRecord("bad offsets", f"offsets {short(fields[1])}, {short(fields[2])} are not integers") from None
    text = doc.text
    if not 0 <= start < end <= len(text):
        raise BadRecord("offset outside the text", f"offsets {start}..{end} outside the text (0..{len(text)})")
    # Compared without surrounding spaces: NCBI-disease's train file has mention fields with trailing spaces.
    if text[start:end].strip() != fields[3].strip():
        raise BadRecord("mention text differs", f"the text at {start}..{end} is {short(text[start:end])}, "
                                                f"not {short(fields[3])}")  # fmt: skip
    return start, end, fields[4].strip()


def _pubtator_docs(col: Collector) -> Iterator[_Doc]:
    doc: _Doc | None = None
    for line, text in _lines(col):
        if not text.strip():
            continue
        title = _TITLE.fullmatch(text)
        if title:
            if doc is not None:
                yield doc
            doc = _Doc(title.group(1), line, title.group(2))
            continue
        if doc is None:
            raise col.fatal(line, f"expected a title line 'PMID|t|title' first, got {short(text)}")
        if doc.bad is not None:
            continue
        try:
            if has_bad_bytes(text):
                raise BadRecord("invalid UTF-8", "line is not valid UTF-8")
            abstract = _ABSTRACT.fullmatch(text)
            if abstract:
                if abstract.group(1) != doc.pmid or doc.abstract is not None or doc.mentions:
                    raise BadRecord(
                        "misplaced abstract",
                        f"abstract line of {abstract.group(1)} in document "
                        f"{doc.pmid} (one per document, before its mentions)",
                    )
                doc.abstract = abstract.group(2)
                continue
            m = _mention(doc, text.split("\t"))
            if m is not None:
                doc.mentions.append((*m, line))
        except BadRecord as e:
            doc.bad = (line, e.reason, f"document {doc.pmid}: {e.problem}")
    if doc is not None:
        yield doc


def resolve_overlaps(mentions: Sequence[tuple[int, int, str]]) -> tuple[list[tuple[int, int, str]], int]:
    """(kept mentions sorted by start, number dropped): the longest mention wins, ties to the earlier one; a
    mention overlapping one already kept is dropped (BIO cannot tag nested or crossing spans). Our choice: the
    outermost span is what the BLURB IOB conversions tag for nested mentions."""
    kept: list[tuple[int, int, str]] = []
    for m in sorted(set(mentions), key=lambda m: (-(m[1] - m[0]), m[0], m[2])):
        if all(m[1] <= k[0] or k[1] <= m[0] for k in kept):
            kept.append(m)
    return sorted(kept), len(mentions) - len(kept)


def split_words(text: str, cuts: Sequence[int] = ()) -> list[tuple[int, int]]:
    """(start, end) of the words of ``text`` (:data:`WORD`), also cut at each offset in ``cuts`` (mention
    boundaries) so that every mention is a whole number of words."""
    cuts = sorted(set(cuts))
    spans = []
    for w in WORD.finditer(text):
        s = w.start()
        for c in cuts:
            if w.start() < c < w.end() and c > s:
                spans.append((s, c))
                s = c
        spans.append((s, w.end()))
    return spans


def bio_tags(spans: Sequence[tuple[int, int]], mentions: Sequence[tuple[int, int, str]]) -> list[str]:
    """The BIO tag of each word span given non-overlapping mentions (start, end, type)."""
    tags = ["O"] * len(spans)
    for start, end, etype in mentions:
        inside = [i for i, (s, e) in enumerate(spans) if start <= s and e <= end]
        for k, i in enumerate(inside):
            tags[i] = f"{'B' if k == 0 else 'I'}-{etype}"
    return tags


def sentence_breaks(text: str, spans: Sequence[tuple[int, int]], tags: Sequence[str], title_end: int) -> list[int]:
    """Indices of the words that start a sentence (0 first). Our choice, a simple rule: a new sentence starts at
    the first abstract word, and after '.', '?' or '!' followed by a space and a word starting with an upper-case
    letter or a digit; never inside a mention (an ``I-`` word)."""
    starts = [0]
    for i in range(1, len(spans)):
        if tags[i].startswith("I"):
            continue
        prev = text[spans[i - 1][0] : spans[i - 1][1]]
        first = text[spans[i][0]]
        after_title = spans[i - 1][1] <= title_end < spans[i][0]
        spaced = spans[i - 1][1] < spans[i][0]  # "0.5" and "e.g." are no sentence ends
        if after_title or (prev in SENTENCE_END and spaced and (first.isupper() or first.isdigit())):
            starts.append(i)
    return starts


def read_pubtator(path: str | os.PathLike, *, skip_bad: bool = False, report: ReadReport | None = None,
                  types: Sequence[str] | None = None, entity_type: str | None = None,
                  unit: str = "sentence") -> list[TaggedSentence]:  # fmt: skip
    """PubTator documents (``pmid|t|title``, ``pmid|a|abstract``, then ``pmid<TAB>start<TAB>end<TAB>text<TAB>type
    [<TAB>id...]`` mention lines with offsets into ``title + " " + abstract``; BC5CDR's relation lines are
    ignored) as BIO-tagged words.

    ``types``: the mention types kept (e.g. ``["Chemical"]``; None: all); ``entity_type``: the type name given
    to every kept mention (e.g. ``"Disease"`` for NCBI-disease's four classes, as BLURB tags them); ``unit``:
    ``"sentence"`` (uid ``pmid:k``) or ``"document"`` (uid ``pmid``; long ones are windowed by the NER task).
    A document with a bad line (a mention whose offsets fall outside the text or whose text differs, a line
    that is neither title, abstract, mention nor relation) is bad as a whole, at that line.
    """
    if unit not in UNITS:
        raise TaskDataError(f"pubtator unit {unit!r} is not one of {', '.join(UNITS)}", path=str(path))
    if isinstance(types, str):
        types = (types,)
    col = Collector(path, skip_bad, report)
    out: list[TaggedSentence] = []
    for doc in _pubtator_docs(col):
        if doc.bad is not None:
            col.bad(*doc.bad)
            continue
        wanted = [(s, e, entity_type or t) for s, e, t, _ in doc.mentions if types is None or t in types]
        kept, dropped = resolve_overlaps(wanted)
        for _ in range(dropped):
            col.not_requested(OVERLAP)
        text = doc.text
        spans = split_words(text, [c for s, e, _ in kept for c in (s, e)])
        tags = bio_tags(spans, kept)
        words = [text[s:e] for s, e in spans]
        if not words:
            col.bad(doc.line, "empty document", f"document {doc.pmid}: no words in its title and abstract")
            continue
        if unit == "document":
            out.append(TaggedSentence(tuple(words), tuple(tags), doc.pmid))
            col.ok()
            continue
        starts = sentence_breaks(text, spans, tags, len(doc.title))
        for k, (a, b) in enumerate(zip(starts, starts[1:] + [len(words)])):
            out.append(TaggedSentence(tuple(words[a:b]), tuple(tags[a:b]), f"{doc.pmid}:{k}"))
            col.ok()
    return out
