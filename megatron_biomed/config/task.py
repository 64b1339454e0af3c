"""What a run trains: the task (pretraining, a scoring head, SFT, DPO) and its data and options."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

# task.chat_template choices (finetune/prompts.py renders them). task.name and task.format name registered
# tasks (training/tasks.py) and task-file readers (data/tasks/registry.py): the run's launcher checks them.
CHAT_TEMPLATES = ("plain", "llama2", "chatml", "biomamba")


@dataclass
class TaskConfig:
    """``name``: pretrain (the data blend), mc (multiple-choice head), classify (sequence-classification
    head; relation extraction too), ner (token-classification head), similarity (regression head on sentence
    pairs), multilabel (a sigmoid per label), sft (loss on response tokens), dpo (preference tuning).

    The fine-tuning tasks read ``train_file`` (and optionally ``valid_file``) in ``format``; the tokenizer is
    ``data.tokenizer``. Prompt templates are named in megatron_biomed/finetune/prompts.py or given inline.
    """

    name: str = "pretrain"
    format: Optional[str] = None
    train_file: Optional[str] = None
    valid_file: Optional[str] = None
    # More training files, each "FORMAT:PATH" (or "PATH": read in task.format), whose items join train_file's
    # (e.g. MedMCQA + MedQA for BioMedLM's MMLU head); every file is read and counted on its own.
    train_files: list = field(default_factory=list)
    # Skip bad records (counted by reason) instead of stopping at the first one.
    skip_bad: bool = False
    # Options of the task.format reader (data/tasks/registry.py READERS; not given to task.train_files in other
    # formats), e.g. for pubtator
    # {types: [Chemical], entity_type: null, unit: sentence}, for conll {first_letter_only: true}.
    reader_options: dict = field(default_factory=dict)
    # MedMCQA's "cop" is 0-based in some releases and 1-based in others: say which (0 or 1).
    medmcqa_cop_base: Optional[int] = None
    # mc / classify: how an item becomes tokens and which one the head reads (finetune/formats.py INPUT_FORMATS):
    # "plain" (prompt_template's text, read at the last token), "biomedlm-mc", "biomedlm-pair", "biomedlm-tokens".
    input_format: str = "plain"
    # mc / classify: the side a too-long sequence is cut from, "left" or "right"; empty = the input format's own.
    truncation: str = ""
    # Prompt template name (see finetune/prompts.py) or an inline template with {context} {question} {option}
    # (input_format=plain only).
    prompt_template: str = "biomedlm"
    # Longest sequence a task builds (tokens); 0 = model.seq_length. Longer prompts are truncated (task.truncation).
    max_seq_length: int = 0
    # classify: number of labels (0 = from the data: PubMedQA 3, BioASQ yes/no 2).
    num_labels: int = 0
    # mc: number of options per question (0 = from the data).
    num_choices: int = 0
    # classify: label names left out of micro F1, the negative class(es) of relation extraction (BLURB: ChemProt
    # "false", DDI "DDI-false", GAD "0"); with any, micro F1 over the other labels is reported (and is the main metric).
    negative_labels: list = field(default_factory=list)
    # Head tasks: the metric reported first (the one the suite averages); empty = the task's own (classify: acc, or
    # micro_f1 with negative_labels; similarity: pearson; multilabel: micro_f1).
    main_metric: str = ""
    # Head tasks: the benchmark type the suite averages this run under ("qa", "ner", "relation", "similarity",
    # "doc_classification"); empty = the task's own (mc / classify: qa). Relation extraction runs classify with
    # task.task_type=relation.
    task_type: str = ""
    # sft: pack several examples into each sequence (documents kept apart by the attention mask).
    pack: bool = True
    # sft / dpo: how chat messages become text ("plain", "llama2", "chatml", "biomamba").
    chat_template: str = "plain"
    # dpo: the sigmoid loss's beta, and the weight of an added SFT (chosen log-likelihood per token) term.
    dpo_beta: float = 0.1
    dpo_sft_weight: float = 0.0
    # ner: the tags in head-output order; empty = from the train file (O, then B-/I- of each type, sorted), written
    # here when the task is built so that a checkpoint's run_config.yaml records the order its head was trained in.
    labels: list = field(default_factory=list)
    # ner: tokens between the starts of consecutive windows of a sequence longer than max_seq_length (0 = half of it).
    window_stride: int = 0
    # ner: the sub-token of each word that carries its tag, "first" (BERT / Hugging Face run_ner) or "last" (the
    # only one that has seen the whole word in a causal model).
    label_subtoken: str = "first"
    # Shuffle the training items each epoch with this seed (None = train.seed).
    shuffle_seed: Optional[int] = None
