"""The typed records the task readers return: multiple-choice and classification items (relation sentences
too) for evaluation, sentence pairs with a similarity score, multi-label texts, tagged sentences for named-entity
recognition, documents with relation triples, summaries, chat examples for SFT and preference pairs for DPO."""

from __future__ import annotations

from dataclasses import dataclass

LETTERS = "ABCDEFGHIJ"


@dataclass(frozen=True)
class MultipleChoiceItem:
    """A question with lettered options (MedQA, MedMCQA, MMLU); ``answer`` is a 0-based index."""

    question: str
    options: tuple[str, ...]
    answer: int
    context: str = ""
    uid: str = ""

    def __post_init__(self) -> None:
        if not 2 <= len(self.options) <= len(LETTERS):
            raise ValueError(f"{self.uid}: need 2..{len(LETTERS)} options, got {len(self.options)}")
        if not 0 <= self.answer < len(self.options):
            raise ValueError(f"{self.uid}: answer {self.answer} out of range for {len(self.options)} options")

    @property
    def answer_letter(self) -> str:
        return LETTERS[self.answer]


@dataclass(frozen=True)
class ClassificationItem:
    """A question over a context with one label out of ``label_names`` (PubMedQA, BioASQ yes/no).

    ``contexts`` keeps the source's passages apart (PubMedQA's CONTEXTS, BioASQ's snippets) so that each
    format joins them as its own source does: lm-evaluation-harness's PubMedQA prompt with "\n", BioMedLM's
    fine-tuning preprocessing with " " over the stripped non-empty ones. ``context`` is the passages joined
    with single spaces; an item made with ``context`` alone has ``contexts == (context,)``.
    """

    question: str
    context: str
    label: int
    label_names: tuple[str, ...]
    long_answer: str = ""
    uid: str = ""
    contexts: tuple[str, ...] = ()
    # PubMedQA's section label of each passage (BACKGROUND, METHODS, ...; empty for BioASQ): templates that lay
    # the passages out as "LABEL: passage" blocks (BioMamba's) read these beside ``contexts``.
    passage_labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.label < len(self.label_names):
            raise ValueError(f"{self.uid}: label {self.label} out of range for {self.label_names}")
        if not self.contexts and self.context:
            object.__setattr__(self, "contexts", (self.context,))  # frozen: set once, here
        elif not isinstance(self.contexts, tuple):
            object.__setattr__(self, "contexts", tuple(self.contexts))

    @property
    def label_name(self) -> str:
        return self.label_names[self.label]


@dataclass(frozen=True)
class SentencePairItem:
    """Two sentences and their gold similarity (BIOSSES: the mean of the annotators' 0-4 scores, kept in
    ``annotations``)."""

    sentence1: str
    sentence2: str
    score: float
    uid: str = ""
    annotations: tuple[float, ...] = ()


@dataclass(frozen=True)
class MultiLabelItem:
    """A text with any number of labels out of ``label_names`` (HoC: an abstract and its hallmarks);
    ``labels`` are sorted label ids, empty for a text with none."""

    text: str
    labels: tuple[int, ...]
    label_names: tuple[str, ...]
    uid: str = ""

    def __post_init__(self) -> None:
        bad = [i for i in self.labels if not 0 <= i < len(self.label_names)]
        if bad:
            raise ValueError(f"{self.uid}: label ids {bad} out of range for {len(self.label_names)} labels")
        object.__setattr__(self, "labels", tuple(sorted(set(self.labels))))  # frozen: set once, here

    def indicator(self) -> tuple[int, ...]:
        """0/1 per label, in ``label_names`` order."""
        return tuple(int(i in self.labels) for i in range(len(self.label_names)))


@dataclass(frozen=True)
class ClinicalNote:
    """One row of MIMIC-IV-Note's ``discharge.csv`` (or a file in its layout)."""

    note_id: str
    subject_id: str
    hadm_id: str
    note_type: str
    note_seq: str
    charttime: str
    storetime: str
    text: str


@dataclass(frozen=True)
class SFTExample:
    """A conversation ``((role, content), ...)`` ending with an assistant turn."""

    messages: tuple[tuple[str, str], ...]
    uid: str = ""


@dataclass(frozen=True)
class PreferenceExample:
    """A prompt with a preferred (``chosen``) and a dispreferred (``rejected``) response."""

    prompt: str
    chosen: str
    rejected: str
    uid: str = ""


@dataclass(frozen=True)
class RelationTriple:
    """One relation of a document: ``head`` -``relation``-> ``tail`` by name (lower-cased as the corpus's
    target sentences spell them; "" where the corpus gives no name) and, where the corpus has them, the
    entities' database ids (BC5CDR: MeSH; KD-DTI valid: DrugBank)."""

    head: str
    relation: str
    tail: str
    head_id: str = ""
    tail_id: str = ""


@dataclass(frozen=True)
class RelationDocument:
    """A document (title and abstract; DDI has no title) with its relation triples, for generative end-to-end
    relation extraction (BioGPT's BC5CDR, KD-DTI, DDI). ``head_names`` / ``tail_names``: ``(lower-cased
    mention, id)`` of every head-type / tail-type mention (BC5CDR's chemicals and diseases; empty elsewhere),
    BioGPT's ``chemical2id`` / ``disease2id``."""

    uid: str
    title: str
    abstract: str
    triples: tuple[RelationTriple, ...]
    head_names: tuple[tuple[str, str], ...] = ()
    tail_names: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class SummaryItem:
    """A text and its reference summary (MeQSum: a consumer health question and its short question)."""

    source: str
    summary: str
    uid: str = ""


@dataclass(frozen=True)
class TaggedSentence:
    """Words with one BIO tag each (named-entity recognition): a sentence of a CoNLL file, or a sentence or whole
    abstract of a PubTator document. Tags are ``O``, ``B``/``I`` (untyped) or ``B-Type``/``I-Type`` (IOB2)."""

    words: tuple[str, ...]
    tags: tuple[str, ...]
    uid: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.words, tuple):
            object.__setattr__(self, "words", tuple(self.words))
        if not isinstance(self.tags, tuple):
            object.__setattr__(self, "tags", tuple(self.tags))
        if len(self.words) != len(self.tags):
            raise ValueError(f"{self.uid}: {len(self.words)} words but {len(self.tags)} tags")
