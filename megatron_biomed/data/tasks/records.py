"""The typed records the task readers return: multiple-choice and classification items for
evaluation, tagged sentences for named-entity recognition, chat examples for SFT and preference pairs for DPO."""

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
