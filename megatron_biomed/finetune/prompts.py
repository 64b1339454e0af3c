"""Prompt templates for the fine-tuning tasks, in one readable place.

These are the text of the ``plain`` input format (``task.input_format=plain``, finetune/formats.py), ours:
Multiple choice (MedQA, MedMCQA, MMLU): one sequence per (question, option); the head scores its last token.
Classification (PubMedQA, BioASQ yes/no): one sequence per item, context first and question last, so that
truncation from the left (which keeps the end) drops the start of a long context, never the question.

The ``biomedlm`` templates keep the order of BioMedLM's fine-tuning code (the question, then each option; the
context before the question) but not its added tokens: its exact layouts ([SEP], <|ANSWER|>, [PAD], right
truncation) are the ``biomedlm-*`` input formats. A template given inline (containing ``{``) is used as is,
with the fields ``{context}``, ``{question}``, ``{option}``.

Chat templates turn SFT / DPO messages into text segments, each marked as response (trained on) or not.
"""

from __future__ import annotations

from megatron_biomed.config.task import CHAT_TEMPLATES
from megatron_biomed.data.tasks import ClassificationItem, MultipleChoiceItem

MC_TEMPLATES = {
    "biomedlm": "{context}{question} {option}",
    "qa": "{context}Question: {question}\nAnswer: {option}",
}
CLASSIFY_TEMPLATES = {
    "biomedlm": "{context} {question}",
    "qa": "Context: {context}\nQuestion: {question}\nAnswer:",
}


class PromptError(ValueError):
    """An unknown template name or a template with unknown fields."""


def _template(name_or_text: str, table: dict, what: str) -> str:
    if "{" in name_or_text:
        return name_or_text
    if name_or_text not in table:
        raise PromptError(f"task.prompt_template={name_or_text!r}: unknown {what} template; known: {', '.join(table)}")
    return table[name_or_text]


def render_choices(item: MultipleChoiceItem, template: str = "biomedlm") -> list[str]:
    """One text per option."""
    t = _template(template, MC_TEMPLATES, "multiple-choice")
    context = f"{item.context} " if item.context else ""
    try:
        return [t.format(context=context, question=item.question, option=o) for o in item.options]
    except KeyError as e:
        raise PromptError(f"prompt template {t!r}: unknown field {e}") from e


def render_classification(item: ClassificationItem, template: str = "biomedlm") -> str:
    t = _template(template, CLASSIFY_TEMPLATES, "classification")
    try:
        return t.format(context=item.context, question=item.question, option="").strip()
    except KeyError as e:
        raise PromptError(f"prompt template {t!r}: unknown field {e}") from e


def render_chat(messages, template: str = "plain") -> list[tuple[str, bool]]:
    """``[(text, is_response), ...]`` for ``messages`` = ``((role, content), ...)``: assistant turns are the
    responses. ``plain``: "User: ...\\nAssistant: ..." lines; ``llama2``: [INST] ... [/INST]; ``chatml``:
    <|im_start|>role ... <|im_end|>."""
    if template not in CHAT_TEMPLATES:
        raise PromptError(f"task.chat_template={template!r}: known templates are {', '.join(CHAT_TEMPLATES)}")
    segments: list[tuple[str, bool]] = []
    system = ""
    for role, content in messages:
        if role == "system":
            system = content
            if template == "chatml":
                segments.append((f"<|im_start|>system\n{content}<|im_end|>\n", False))
            elif template == "plain":
                segments.append((f"{content}\n", False))
            continue
        if role == "assistant":
            if template == "chatml":
                segments.append(("<|im_start|>assistant\n", False))
                segments.append((f"{content}<|im_end|>\n", True))
            elif template == "llama2":
                segments.append((f" {content} ", True))
            else:
                segments.append(("Assistant: ", False))
                segments.append((f"{content}\n", True))
        else:
            if template == "chatml":
                segments.append((f"<|im_start|>{role}\n{content}<|im_end|>\n", False))
            elif template == "llama2":
                sys_part = f"<<SYS>>\n{system}\n<</SYS>>\n\n" if system else ""
                system = ""
                segments.append((f"[INST] {sys_part}{content} [/INST]", False))
            else:
                segments.append((f"User: {content}\n", False))
    return segments
