"""BioMamba's SFT as its authors ran it (LeoYML/BioMamba @ e61db22): the instruction template character by
character, the context layouts of their SFT and evaluation, the response-only loss mask of their
``prepare_sft_data`` (labels on the answer's tokens only, no end-of-text token), their data mix, and the
launcher's published values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from megatron_biomed.data.tasks import ClassificationItem
from megatron_biomed.finetune.encoding import TruncationCount, pack_documents, sft_document
from megatron_biomed.finetune.instructions import heldout_split, instruction_splits, mix_in
from megatron_biomed.finetune.prompts import (
    INSTRUCTION_TEMPLATES,
    instruction_example,
    render_chat,
    render_instruction,
)
from megatron_biomed.finetune.sft import masked_token_loss
from megatron_biomed.tokenizer import load_tokenizer

ROOT = Path(__file__).resolve().parents[2]

# ft_biomamba/config.py @ e61db22, QA_TEMPLATE, typed from the source.
AUTHORS_QA_TEMPLATE = (
    "Answer the following biomedical research question with yes, no, or maybe based on the provided context."
    "\n\nQuestion: {question}\n\nContext:\n{context}\n\nAnswer:"
)

PUBMEDQA_ITEM = ClassificationItem(
    question="Does X help?", context="ignored", label=2, label_names=("yes", "no", "maybe"), uid="7",
    contexts=("First part. ", "Second part.", "Third."), passage_labels=("BACKGROUND", "", "RESULTS"),
)  # fmt: skip
BIOASQ_ITEM = ClassificationItem(question="Is Y a gene?", context="", label=0, label_names=("yes", "no"),
                                 contexts=("  snip one ", "", "snip two\n"))  # fmt: skip


def test_template_is_the_authors_character_by_character():
    assert INSTRUCTION_TEMPLATES["biomamba_qa"] == AUTHORS_QA_TEMPLATE


def test_sft_text_is_theirs():
    """_format_pubmedqa: "LABEL: passage" (unlabelled passages as they are), blocks joined by a blank line;
    _format_bioasq: snippets stripped, empties dropped, "N/A" when none; the text trained on is
    f"{instruction} {answer}"."""
    ex = instruction_example(PUBMEDQA_ITEM, "pubmedqa")
    context = "BACKGROUND: First part. \n\nSecond part.\n\nRESULTS: Third."
    want = AUTHORS_QA_TEMPLATE.format(question="Does X help?", context=context)
    assert ex.messages == (("user", want), ("assistant", "maybe"))
    assert "".join(t for t, _ in render_chat(ex.messages, "biomamba")) == want + " maybe"
    ex = instruction_example(BIOASQ_ITEM, "bioasq")
    assert ex.messages[0][1] == AUTHORS_QA_TEMPLATE.format(question="Is Y a gene?", context="snip one\n\nsnip two")
    empty = ClassificationItem(question="Q?", context="", label=1, label_names=("yes", "no"), contexts=())
    assert instruction_example(empty, "bioasq").messages[0][1].endswith("Context:\nN/A\n\nAnswer:")
    # evaluation cuts the context at 2,400 characters and adds "..." (evaluate.py format_qa_prompt)
    assert render_instruction("Q?", "a" * 2400, max_context_chars=2400) == \
        AUTHORS_QA_TEMPLATE.format(question="Q?", context="a" * 2400)
    assert render_instruction("Q?", "a" * 2401, max_context_chars=2400) == \
        AUTHORS_QA_TEMPLATE.format(question="Q?", context="a" * 2400 + "...")


def test_loss_mask_is_the_answer_tokens_only(toy):
    """Their labels: the ids of tokenizer(instruction + " " + answer), -100 on the first len(tokenizer(
    instruction)) positions; no end-of-text token. Ours must train exactly those tokens, and the loss must be
    the mean over them of the next-token losses."""
    tok = load_tokenizer(toy["tok"])
    ex = instruction_example(PUBMEDQA_ITEM, "pubmedqa")
    instruction, answer = ex.messages[0][1], ex.messages[1][1]
    ids, mask = sft_document(tok, ex, "biomamba", tok.eod_id)
    full, inst = tok.encode(f"{instruction} {answer}"), tok.encode(instruction)
    assert ids == full and tok.eod_id not in ids  # the same text, no end-of-text token appended
    assert mask == [0] * len(inst) + [1] * (len(full) - len(inst))  # their -100 rule
    assert len(full) > len(inst)
    # Packed into fixed-length samples, one per sequence: the loss mask sits on the labels that are the answer.
    seq = len(full) + 5
    (sample,) = pack_documents([(ids, mask)], seq, tok.eod_id, False, TruncationCount())
    trained = sample["labels"][sample["loss_mask"].bool()].tolist()
    assert trained == full[len(inst):]  # fmt: skip
    losses = torch.rand(seq, dtype=torch.float64)
    total, n, _ = masked_token_loss(sample["loss_mask"], losses)
    assert int(n) == len(full) - len(inst)
    assert float(total) == pytest.approx(float(losses[len(inst) - 1 : len(full) - 1].sum()))
    # the other templates still close with a trained end-of-text token
    ids, mask = sft_document(tok, ex, "plain", tok.eod_id)
    assert ids[-1] == tok.eod_id and mask[-1] == 1


def test_split_and_mix_are_theirs():
    """train_test_split(test_size=0.2, seed=42): ceil(20%) held out; BioASQ as 30% of the mixed training part
    (int(n x 0.3 / 0.7)), cycled when too few; nothing lost or duplicated otherwise."""
    items = list(range(1000))
    train, valid = heldout_split(items, 0.2, 42)
    assert (len(train), len(valid)) == (800, 200) and sorted(train + valid) == items
    assert heldout_split(items, 0.2, 42) == (train, valid) and heldout_split(items, 0.2, 43) != (train, valid)
    assert heldout_split(list(range(7)), 0.2, 0)[1].__len__() == 2  # ceil(1.4)
    mixed = mix_in(train, [f"b{i}" for i in range(100)], 0.3, 42)
    extra = [m for m in mixed if isinstance(m, str)]
    assert len(mixed) == 800 + 342 and len(extra) == 342  # int(800 * 0.3 / 0.7)
    assert {extra.count(f"b{i}") for i in range(100)} <= {3, 4}  # cycled through all 100
    assert sorted(m for m in mixed if not isinstance(m, str)) == sorted(train)
    tr, va = instruction_splits([PUBMEDQA_ITEM] * 10, "pubmedqa", [BIOASQ_ITEM] * 3, "bioasq")
    assert (len(tr), len(va)) == (8 + 3, 2)


def test_tool_on_the_shared_pubmedqa(tmp_path):
    """tools/make_instruction_sft.py on the shared PubMedQA items: an 80/20 split in task.format=sft."""
    from megatron_biomed.data.tasks import read_sft

    src = ROOT / ".." / "shared" / "data" / "pubmedqa" / "pqal_trainval_500.json"
    if not src.exists():
        pytest.skip(f"{src} is not staged")
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_instruction_sft", ROOT / "tools" / "make_instruction_sft.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.main(["--pubmedqa", str(src), "--output-dir", str(tmp_path)]) == 0
    train, valid = read_sft(tmp_path / "train.jsonl"), read_sft(tmp_path / "valid.jsonl")
    assert (len(train), len(valid)) == (400, 100)
    row = json.loads((tmp_path / "train.jsonl").read_text().splitlines()[0])
    assert row["prompt"].startswith(AUTHORS_QA_TEMPLATE.split("{")[0]) and row["response"] in ("yes", "no", "maybe")
    assert "\n\nContext:\n" in row["prompt"] and row["prompt"].endswith("\n\nAnswer:")


def test_evaluation_prompts_are_theirs():
    """Their generative evaluation (evaluate.py _get_context + format_qa_prompt): passages without section
    labels, blank-line joined, cut at 2,400 characters; their PubMedQA log-probability scoring
    (eval_pubmedqa_generative.py): the labelled context, the three label words after "Answer:"."""
    from megatron_biomed.eval.benchmarks import benchmark
    from megatron_biomed.eval.generation import yes_no_prompt

    assert yes_no_prompt(PUBMEDQA_ITEM) == AUTHORS_QA_TEMPLATE.format(
        question="Does X help?", context="First part. \n\nSecond part.\n\nThird.")  # fmt: skip
    assert yes_no_prompt(BIOASQ_ITEM) == AUTHORS_QA_TEMPLATE.format(question="Is Y a gene?",
                                                                    context="snip one\n\nsnip two")  # fmt: skip
    q = benchmark("pubmedqa_biomamba").to_question(PUBMEDQA_ITEM)
    assert q.prompt == AUTHORS_QA_TEMPLATE.format(
        question="Does X help?", context="BACKGROUND: First part. \n\nSecond part.\n\nRESULTS: Third.")  # fmt: skip
    assert (q.choices, q.answer) == (("yes", "no", "maybe"), 2)
