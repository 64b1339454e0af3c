"""Input formats of the scoring-head tasks: how an item becomes a token sequence, and which position the head reads.

A format turns an item into *parts* (the units truncation shares its budget between, as a Hugging Face
tokenizer's text pair), each a sequence of *pieces*: text (tokenized) or a :class:`Marker` (one added token,
looked up by name, never truncated). It names the added tokens it needs (they must be in the run's tokenizer:
``tools/extend_vocab.py --special-tokens`` writes them, ``tools/convert_hf.py import --extend-vocab`` grows the
checkpoint's embedding), its padding token, the token whose last occurrence the head reads (None: the last real
token) and its default truncation side. Every format is registered once in :data:`INPUT_FORMATS` below;
``task.input_format`` chooses one and ``task.truncation`` may override its side.

The BioMedLM formats follow stanford-crfm/BioMedLM finetune/ @ 9e35fddada3e7e5638f5dc55b9e5c74502de6c86:

* ``biomedlm-mc`` -- finetune/mc/run_multiple_choice.py: ``[PAD]``, ``[CLS]``, ``[SEP]`` added as special tokens
  and the embeddings resized; the pair (``sent1 + [SEP]``, ``f"{sent2} {ending}" + [SEP]``) with
  finetune/mc/preprocess_medqa.py's ``sent1`` = the question, ``sent2`` = "" (so the option text starts with a
  space); Hugging Face ``truncation=True`` (longest first, from the right), right padding with ``[PAD]``;
  GPT2ForMultipleChoice (finetune/utils/custom_modeling_gpt2.py) reads the last non-pad token: the final ``[SEP]``.
* ``biomedlm-pair`` -- finetune/seqcls/run_seqcls_gpt.py as released: ``[PAD]`` and the four tokens
  ``<|CONTEXT|>``, ``<|QUESTION1|>``, ``<|QUESTION2|>``, ``<|ANSWER|>`` are added to the vocabulary, but the
  lines that would insert them are commented out, so the text is the pair (context, question) with no
  separator (finetune/seqcls/preprocess_blurb_seqcls.py: ``sentence2`` = the context, ``sentence1`` = the
  question); longest-first truncation from the right; GPT2ForSequenceClassification reads the last non-pad
  token (the question's last token).
* ``biomedlm-tokens`` -- the paper's description (arXiv 2403.18421 §4.4 as issue 18 quotes it: a context token,
  a question token and an answer token, the classifier on the final special token): ``<|CONTEXT|>`` context,
  ``<|QUESTION1|>`` question ``<|ANSWER|>``, read at the last ``<|ANSWER|>``. The commented-out helpers in
  run_seqcls_gpt.py show that shape (``"<|CONTEXT|>" + context``, ``"<|QUESTION|>" + question + "<|ANSWER|>"``)
  but name a ``<|QUESTION|>`` token the script never adds; we use the added ``<|QUESTION1|>`` (our choice).

Sentence pairs (the ``similarity`` task, BIOSSES) and single texts (the ``multilabel`` task, HoC abstracts) are
laid out by the same formats (``pair`` and ``text`` below), the two sentences as the two parts a text pair is
(so truncation shares the budget between them, as Hugging Face's pair encoding does):

* ``plain`` -- the first sentence, a newline, the second (our choice: a separator a plain tokenizer has); a text
  as it is; read at the last token.
* ``biomedlm-pair`` -- the two sentences with nothing between them, as run_seqcls_gpt.py encodes every
  (sentence1, sentence2) pair, BLURB's BIOSSES included; a text alone.
* ``biomedlm-tokens`` -- ``<|QUESTION1|>`` first ``<|QUESTION2|>`` second ``<|ANSWER|>`` (the two question
  tokens BioMedLM's seqcls script adds for sentence pairs), a text as ``<|CONTEXT|>`` text ``<|ANSWER|>``;
  read at ``<|ANSWER|>``.

Truncation is the Hugging Face tokenizers' ``longest_first`` rule (tokenizers/src/utils/truncation.rs) over
the parts' text tokens, with one deliberate difference: markers are never cut (so the token the head reads is
always there), where Hugging Face would cut a part's trailing ``[SEP]`` with its text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from megatron_biomed.data.tasks import ClassificationItem, MultiLabelItem, MultipleChoiceItem, SentencePairItem
from megatron_biomed.errors import BiomedError
from megatron_biomed.finetune.prompts import render_choices, render_classification
from megatron_biomed.registry import Registry

TRUNCATION_SIDES = ("left", "right")


class InputFormatError(BiomedError, ValueError):
    """An unknown input format, a truncation side it cannot take, or a tokenizer without its added tokens."""


@dataclass(frozen=True)
class Marker:
    """One added token (``[SEP]``, ``<|ANSWER|>``), inserted by id and never truncated."""

    token: str


Piece = str | Marker
Parts = list[list[Piece]]


@dataclass(frozen=True)
class InputFormat:
    """How a scoring-head item becomes token parts, and where the head reads.

    ``choices(item, template)``: one ``Parts`` per option; ``classification(item, template)``: the ``Parts`` of
    the item (``template``: ``task.prompt_template``, used by the ``plain`` format only); ``pair(item, template)``:
    a sentence pair's ``Parts``; ``text(item, template)``: a single text's. ``added_tokens``: the
    tokens this format needs in the tokenizer; ``pad_token``: the padding token (None: end of document);
    ``pool_token``: the head reads this token's last occurrence (None: the last real token); ``truncation``:
    the side cut by default (``task.truncation`` overrides it). A format without one of the layouts does not
    serve the tasks that need it (each head task names its ``layout``)."""

    name: str
    choices: Callable[[MultipleChoiceItem, str], list[Parts]] | None
    classification: Callable[[ClassificationItem, str], Parts] | None
    added_tokens: tuple[str, ...] = ()
    pad_token: str | None = None
    pool_token: str | None = None
    truncation: str = "left"
    pair: Callable[[SentencePairItem, str], Parts] | None = None
    text: Callable[[MultiLabelItem, str], Parts] | None = None

    def check_layout(self, layout: str, task: str) -> None:
        """InputFormatError unless this format has ``layout`` ("choices", "classification", "pair", "text"), the
        layout the head task ``task`` needs."""
        if getattr(self, layout, None) is None:
            serving = [name for name, f in INPUT_FORMATS.items() if getattr(f, layout, None) is not None]
            raise InputFormatError(f"task.input_format={self.name} does not lay out the items of task {task} "
                                   f"({layout}); formats that do: {', '.join(serving)}")  # fmt: skip

    def special_ids(self, tok) -> dict[str, int]:
        """{token: id} of the added tokens in ``tok``; InputFormatError naming the missing ones and the fix."""
        ids = {t: tok.token_to_id(t) for t in self.added_tokens}
        missing = [t for t, i in ids.items() if i is None]
        if missing:
            raise InputFormatError(
                f"task.input_format={self.name} needs the added tokens {missing} in data.tokenizer "
                f"({getattr(tok, 'path', None) or 'the run tokenizer'}); extend it with tools/extend_vocab.py "
                f"--special-tokens {' '.join(self.added_tokens)} and import the checkpoint with "
                "tools/convert_hf.py import --extend-vocab (see examples/biomedlm/prepare_finetune_vocab.sh)"
            )
        return ids


# ---- the formats --------------------------------------------------------------------------------------------


def _plain_choices(item: MultipleChoiceItem, template: str) -> list[Parts]:
    return [[[text]] for text in render_choices(item, template)]


def _plain_classification(item: ClassificationItem, template: str) -> Parts:
    return [[render_classification(item, template)]]


def _question_of(item: MultipleChoiceItem) -> str:
    """BioMedLM's ``sent1``: the question (MedQA's "passage and question"), a context first where there is one."""
    return f"{item.context} {item.question}" if item.context else item.question


def _biomedlm_choices(item: MultipleChoiceItem, template: str) -> list[Parts]:
    # run_multiple_choice.py: first = sent1 + [SEP]; second = f"{sent2} {ending}" + [SEP] with sent2 = "".
    sep = Marker("[SEP]")
    return [[[_question_of(item), sep], [f" {option}", sep]] for option in item.options]


def _seqcls_context(item: ClassificationItem) -> str:
    """BioMedLM's ``sentence2``: the passages stripped, empty ones dropped, joined with single spaces
    (finetune/seqcls/preprocess_blurb_seqcls.py)."""
    return " ".join(c.strip() for c in item.contexts if c.strip())


def _biomedlm_pair(item: ClassificationItem, template: str) -> Parts:
    # run_seqcls_gpt.py: tokenizer(contexts, questions): the context, then the question, nothing between.
    return [[_seqcls_context(item)], [item.question]]


def _biomedlm_tokens(item: ClassificationItem, template: str) -> Parts:
    return [[Marker("<|CONTEXT|>"), _seqcls_context(item)],
            [Marker("<|QUESTION1|>"), item.question, Marker("<|ANSWER|>")]]  # fmt: skip


def _plain_pair(item: SentencePairItem, template: str) -> Parts:
    return [[item.sentence1 + "\n"], [item.sentence2]]


def _plain_text(item: MultiLabelItem, template: str) -> Parts:
    return [[item.text]]


def _biomedlm_pair_of_sentences(item: SentencePairItem, template: str) -> Parts:
    return [[item.sentence1], [item.sentence2]]


def _biomedlm_tokens_pair(item: SentencePairItem, template: str) -> Parts:
    return [[Marker("<|QUESTION1|>"), item.sentence1],
            [Marker("<|QUESTION2|>"), item.sentence2, Marker("<|ANSWER|>")]]  # fmt: skip


def _biomedlm_tokens_text(item: MultiLabelItem, template: str) -> Parts:
    return [[Marker("<|CONTEXT|>"), item.text, Marker("<|ANSWER|>")]]


# BioMedLM's seqcls script adds these five tokens whichever of its two shapes is used.
BIOMEDLM_SEQCLS_TOKENS = ("[PAD]", "<|CONTEXT|>", "<|QUESTION1|>", "<|QUESTION2|>", "<|ANSWER|>")
BIOMEDLM_MC_TOKENS = ("[PAD]", "[CLS]", "[SEP]")

# name -> InputFormat: every format a head task can read, in one place.
INPUT_FORMATS: Registry[InputFormat] = Registry(
    "input format",
    {
        # Ours before issue 18: task.prompt_template's text, cut from the left, read at the last token.
        "plain": InputFormat("plain", _plain_choices, _plain_classification, pair=_plain_pair, text=_plain_text),
        "biomedlm-mc": InputFormat(
            "biomedlm-mc", _biomedlm_choices, None, added_tokens=BIOMEDLM_MC_TOKENS,
            pad_token="[PAD]", pool_token="[SEP]", truncation="right",
        ),
        "biomedlm-pair": InputFormat(
            "biomedlm-pair", None, _biomedlm_pair, added_tokens=BIOMEDLM_SEQCLS_TOKENS, pad_token="[PAD]",
            truncation="right", pair=_biomedlm_pair_of_sentences, text=_plain_text,
        ),
        "biomedlm-tokens": InputFormat(
            "biomedlm-tokens", None, _biomedlm_tokens, added_tokens=BIOMEDLM_SEQCLS_TOKENS,
            pad_token="[PAD]", pool_token="<|ANSWER|>", truncation="right", pair=_biomedlm_tokens_pair,
            text=_biomedlm_tokens_text,
        ),
    },  # fmt: skip
    error=InputFormatError,
    plural="input formats",
    hint="set task.input_format",
)


def input_format(name: str) -> InputFormat:
    """The registered format ``name`` (InputFormatError listing the known ones otherwise)."""
    return INPUT_FORMATS.get(name)


def truncation_side(fmt: InputFormat, override: str = "") -> str:
    """``override`` (``task.truncation``) if set, else the format's side."""
    side = override or fmt.truncation
    if side not in TRUNCATION_SIDES:
        raise InputFormatError(f"task.truncation={side!r}: expected one of {', '.join(TRUNCATION_SIDES)} (or empty)")
    return side
