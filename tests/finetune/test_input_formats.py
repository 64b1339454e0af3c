"""BioMedLM's fine-tuning input formats (finetune/formats.py), token by token, and the position the head reads.

Expectations are written by hand from the authors' templates (stanford-crfm/BioMedLM finetune/ @ 9e35fdd):
multiple choice is ``question [SEP]`` + `` option [SEP]`` (run_multiple_choice.py, sent2 = ""), PubMedQA / BioASQ
as released is the pair (context, question) with nothing between (run_seqcls_gpt.py), and the paper's shape is
``<|CONTEXT|> context <|QUESTION1|> question <|ANSWER|>``; sequences are cut by Hugging Face's longest-first rule
from the right and padded on the right with ``[PAD]``. One token per character (tests/finetune/chartasks.py), the
added tokens numbered after the end-of-document token (chartasks.ADDED).
"""

from __future__ import annotations

import json

import pytest
import torch
from chartasks import ADDED, CharTokenizer, char_config, char_task, ids, use_char_tokenizer

import megatron_biomed.finetune.task_base as task_base
from megatron_biomed.data.gpt_dataset import collate
from megatron_biomed.finetune.data import TaskSetupError
from megatron_biomed.finetune.encoding import longest_first
from megatron_biomed.models.heads import find_head, flatten_choices, head_forward
from megatron_biomed.training.tasks import build_task

SEQ = 16
PAD, SEP, ANS = ADDED["[PAD]"], ADDED["[SEP]"], ADDED["<|ANSWER|>"]
CTX, Q1 = ADDED["<|CONTEXT|>"], ADDED["<|QUESTION1|>"]
MC = [("Which?", ["red", "a long green option", "cat", "dog"])]
MC_ROWS = [{"question": q, "options": dict(zip("ABCD", o, strict=True)), "answer_idx": "B"} for q, o in MC]
PQA = {
    "1": {"QUESTION": "Is it?", "CONTEXTS": ["a very long context", "that goes on"], "final_decision": "yes"},
    "2": {"QUESTION": "Why?", "CONTEXTS": ["short"], "final_decision": "no"},
}


def _padded(tokens: list[int]) -> list[int]:
    return tokens + [PAD] * (SEQ - len(tokens))


def _samples(monkeypatch, tmp_path, task, rows, *sets):
    return char_task(monkeypatch, tmp_path, task, rows, *sets, seq=SEQ).build_datasets((8, 0))[0].samples


def test_multiple_choice_is_question_sep_option_sep_read_at_the_final_sep(monkeypatch, tmp_path):
    (sample,) = _samples(monkeypatch, tmp_path, "mc", MC_ROWS, "task.input_format=biomedlm-mc")
    q = ids("Which?") + [SEP]
    want = [
        _padded(q + ids(" red") + [SEP]),
        # 6 + 20 text tokens, 2 markers, 16 positions: the question (shorter) is kept whole, the option keeps
        # the 8 tokens left, its end cut (right truncation); its [SEP] is kept (Hugging Face would cut it).
        q + ids(" a long ") + [SEP],
        _padded(q + ids(" cat") + [SEP]),
        _padded(q + ids(" dog") + [SEP]),
    ]
    assert sample["tokens"].tolist() == want
    assert sample["last_index"].tolist() == [11, 15, 11, 11]  # the final [SEP] of each row
    assert int(sample["label"]) == 1


def test_truncation_side_is_an_option(monkeypatch, tmp_path):
    (sample,) = _samples(monkeypatch, tmp_path, "mc", MC_ROWS, "task.input_format=biomedlm-mc", "task.truncation=left")
    assert sample["tokens"][1].tolist() == ids("Which?") + [SEP] + ids("n option") + [SEP]
    assert int(sample["last_index"][1]) == 15


def test_pubmedqa_as_released_is_context_then_question(monkeypatch, tmp_path):
    a, b = _samples(monkeypatch, tmp_path, "classify", PQA, "task.input_format=biomedlm-pair")
    # 32 context + 6 question tokens into 16: the question kept whole, the context's first 10 tokens.
    assert a["tokens"][0].tolist() == ids("a very lon") + ids("Is it?")
    assert b["tokens"][0].tolist() == _padded(ids("short") + ids("Why?"))
    assert a["last_index"].tolist() == [15] and b["last_index"].tolist() == [8]  # the question's last token


def test_pubmedqa_with_the_papers_tokens_is_read_at_the_answer_token(monkeypatch, tmp_path):
    a, b = _samples(monkeypatch, tmp_path, "classify", PQA, "task.input_format=biomedlm-tokens")
    # 3 markers leave 13 text positions: the question's 6, the context's first 7.
    assert a["tokens"][0].tolist() == [CTX] + ids("a very ") + [Q1] + ids("Is it?") + [ANS]
    assert b["tokens"][0].tolist() == _padded([CTX] + ids("short") + [Q1] + ids("Why?") + [ANS])
    assert a["last_index"].tolist() == [15] and b["last_index"].tolist() == [11]


def test_longest_first_matches_hugging_face_tokenizers():
    """Our allocation against the Rust implementation BioMedLM's scripts ran (a pair, truncation=True)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, "a": 1, "b": 2}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    for budget in (1, 2, 5, 8, 9):
        tok.enable_truncation(max_length=budget, strategy="longest_first", direction="right")
        for n1 in (0, 1, 3, 4, 7, 12):
            for n2 in (1, 2, 4, 9):
                enc = tok.encode(" ".join("a" * n1), " ".join("b" * n2))
                hf = [enc.ids.count(1), enc.ids.count(2)]
                assert longest_first([n1, n2], budget) == hf, (n1, n2, budget)
    assert longest_first([30], 12) == [12] and longest_first([3], 12) == [3]


@pytest.mark.parametrize("task_name,fmt", [("mc", "biomedlm-mc"), ("classify", "biomedlm-tokens")])
def test_head_reads_the_final_special_token(task_name, fmt, monkeypatch, tmp_path, single_rank_parallel):
    """The head's scores equal its projection of the final hidden state at the final [SEP] / <|ANSWER|>, found
    here from the tokens; reading the last (padded) position instead would score differently."""
    from inprocess import build

    use_char_tokenizer(monkeypatch)
    rows = MC_ROWS if task_name == "mc" else PQA
    task, model = build(char_config(tmp_path, task_name, rows, f"task.input_format={fmt}", seq=SEQ))
    batch = collate(task.build_datasets((8, 0))[0].samples)
    flat = flatten_choices(batch, SEQ)
    marker = SEP if task_name == "mc" else ANS
    reads = [max(i for i, t in enumerate(row) if t == marker) for row in flat["tokens"].tolist()]
    head = find_head(model)
    with torch.no_grad():
        scores = head_forward(model, flat)
        hidden = model(flat["tokens"], flat["position_ids"], None,
                       output_processor=lambda *, hidden_states, **_: hidden_states)  # fmt: skip
        want = head.proj(torch.stack([hidden[p, r] for r, p in enumerate(reads)]))
        at_end = head.proj(hidden[SEQ - 1])
    assert torch.allclose(scores, want, rtol=0, atol=1e-6)
    padded = [r for r, p in enumerate(reads) if p < SEQ - 1]
    assert padded and (scores[padded] - at_end[padded]).abs().amax(-1).min() > 1e-2


def test_format_needs_its_tokens_and_its_task(monkeypatch, tmp_path):
    class Unextended(CharTokenizer):
        def token_to_id(self, token):
            return None

    monkeypatch.setattr(task_base, "load_run_tokenizer", lambda cfg, path=None: Unextended())
    cfg = char_config(tmp_path, "mc", MC_ROWS, "task.input_format=biomedlm-mc", seq=SEQ)
    with pytest.raises(TaskSetupError, match=r"\[SEP\].*extend_vocab.py"):
        build_task(cfg, None)
    wrong_layout = (r"biomedlm-tokens does not lay out the items of task mc \(choices\); "
                    r"formats that do: plain, biomedlm-mc")
    with pytest.raises(TaskSetupError, match=wrong_layout):
        char_task(monkeypatch, tmp_path, "mc", MC_ROWS, "task.input_format=biomedlm-tokens")
    with pytest.raises(TaskSetupError, match="unknown input format 'nope'"):
        char_task(monkeypatch, tmp_path, "mc", MC_ROWS, "task.input_format=nope")


def test_several_training_files_are_all_read(monkeypatch, tmp_path):
    """task.train_files adds files in their own formats: every item of every file is trained on."""
    medmcqa = tmp_path / "medmcqa.jsonl"
    rows = [{"question": f"m{i}?", "opa": "w", "opb": "x", "opc": "y", "opd": "z", "cop": i % 4} for i in range(3)]
    medmcqa.write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = char_task(monkeypatch, tmp_path, "mc", MC_ROWS, "task.input_format=biomedlm-mc", "task.medmcqa_cop_base=0",
                     f"task.train_files=[\"medmcqa:{medmcqa}\"]", seq=SEQ)  # fmt: skip
    assert [it.question for it in task.train_items] == ["Which?", "m0?", "m1?", "m2?"]
    assert [it.answer for it in task.train_items] == [1, 0, 1, 2]
    samples = task.build_datasets((8, 0))[0].samples
    assert len(samples) == 4
    assert samples[3]["tokens"][2].tolist() == _padded(ids("m2?") + [SEP] + ids(" y") + [SEP])
