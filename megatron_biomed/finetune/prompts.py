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

BioMamba's instruction template (``biomamba_qa``) is the one its authors' SFT and evaluation share, with the
context laid out as their code does (PubMedQA passages as "LABEL: passage" blocks, BioASQ snippets as
blocks); the ``biomamba`` chat template renders an SFT example as their training text, ``instruction + " " +
answer``, with no end-of-text token (their labels end at the answer).
"""

from __future__ import annotations

from megatron_biomed.config.task import CHAT_TEMPLATES
from megatron_biomed.data.tasks import ClassificationItem, MultipleChoiceItem, SFTExample

MC_TEMPLATES = {
    "biomedlm": "{context}{question} {option}",
    "qa": "{context}Question: {question}\nAnswer: {option}",
}
CLASSIFY_TEMPLATES = {
    "biomedlm": "{context} {question}",
    "qa": "Context: {context}\nQuestion: {question}\nAnswer:",
}


# LeoYML/BioMamba ft_biomamba/config.py @ e61db22: QA_TEMPLATE ("shared by SFT and eval").
INSTRUCTION_TEMPLATES = {
    "biomamba_qa": (
        "Answer the following biomedical research question with yes, no, or maybe "
        "based on the provided context.\n\n"
        "Question: {question}\n\n"
        "Context:\n{context}\n\n"
        "Answer:"
    ),
}
# LeoYML/BioMamba ft_biomamba/evaluate.py @ e61db22 format_qa_prompt (and scripts/evaluation/
# eval_pubmedqa_generative.py format_prompt): at evaluation the context is cut to 2400 characters, "..." added.
EVAL_CONTEXT_CHARS = 2400


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


# Chat templates whose examples end with the end-of-text token (trained on, so the model learns to stop).
# BioMamba's SFT appends none: its labels are the answer's tokens only (ft_biomamba/data.py @ e61db22).
CHAT_CLOSES_WITH_EOD = {"plain": True, "llama2": True, "chatml": True, "biomamba": False}


def render_chat(messages, template: str = "plain") -> list[tuple[str, bool]]:
    """``[(text, is_response), ...]`` for ``messages`` = ``((role, content), ...)``: assistant turns are the
    responses. ``plain``: "User: ...\\nAssistant: ..." lines; ``llama2``: [INST] ... [/INST]; ``chatml``:
    <|im_start|>role ... <|im_end|>; ``biomamba``: the user's text as is, then a space and the answer (BioMamba's
    SFT text)."""
    if template not in CHAT_TEMPLATES:
        raise PromptError(f"task.chat_template={template!r}: known templates are {', '.join(CHAT_TEMPLATES)}")
    segments: list[tuple[str, bool]] = []
    system = ""
    for role, content in messages:
        if template == "biomamba":  # their training text: f"{instruction} {answer}" (ft_biomamba/data.py)
            segments.append((f" {content}" if role == "assistant" else content, role == "assistant"))
            continue
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


# ---- BioMamba instructions (LeoYML/BioMamba ft_biomamba/data.py @ e61db22) --------------------------------


def pubmedqa_labelled_context(item: ClassificationItem) -> str:
    """PubMedQA passages as their SFT (``_format_pubmedqa``) and their log-probability evaluation
    (eval_pubmedqa_generative.py ``get_context``) lay them out: "LABEL: passage" where the passage has a
    section label, the passage alone otherwise, blocks joined by a blank line."""
    labels = item.passage_labels
    passages = item.contexts or (item.context,)
    return "\n\n".join(f"{labels[i]}: {p}" if i < len(labels) and labels[i] else p for i, p in enumerate(passages))


def bioasq_snippet_context(item: ClassificationItem) -> str:
    """BioASQ snippets as their SFT (``_format_bioasq``) lays them out: each stripped, empty ones dropped,
    joined by a blank line; "N/A" when none is left."""
    parts = [p.strip() for p in (item.contexts or (item.context,)) if p.strip()]
    return "\n\n".join(parts) if parts else "N/A"


def passages_context(item: ClassificationItem) -> str:
    """The context their generative evaluation (evaluate.py ``_get_context``) gives both PubMedQA and BioASQ:
    the passages stripped (BioASQ) or as they are (PubMedQA), no section labels, joined by a blank line."""
    if item.passage_labels:
        return "\n\n".join(item.contexts)
    return "\n\n".join(p.strip() for p in item.contexts if p.strip())


# Context layouts for SFT, by task-file format.
SFT_CONTEXTS = {"pubmedqa": pubmedqa_labelled_context, "bioasq": bioasq_snippet_context}


def render_instruction(question: str, context: str, template: str = "biomamba_qa",
                       max_context_chars: int | None = None) -> str:  # fmt: skip
    """The instruction of ``template`` for a question and its (already laid out) context; with
    ``max_context_chars`` the context is cut there and "..." appended when it was longer (their evaluation)."""
    t = _template(template, INSTRUCTION_TEMPLATES, "instruction")
    if max_context_chars is not None and len(context) > max_context_chars:
        context = context[:max_context_chars] + "..."
    try:
        return t.format(question=question, context=context)
    except KeyError as e:
        raise PromptError(f"prompt template {t!r}: unknown field {e}") from e


def instruction_example(item: ClassificationItem, fmt: str, template: str = "biomamba_qa") -> SFTExample:
    """An SFT example (user: the instruction, assistant: the label word) for a PubMedQA / BioASQ yes/no item, the
    context laid out for ``fmt`` as BioMamba's SFT does."""
    if fmt not in SFT_CONTEXTS:
        raise PromptError(f"instruction SFT data from format {fmt!r}: known formats are {', '.join(SFT_CONTEXTS)}")
    prompt = render_instruction(item.question, SFT_CONTEXTS[fmt](item), template)
    return SFTExample(messages=(("user", prompt), ("assistant", item.label_name)), uid=item.uid)
