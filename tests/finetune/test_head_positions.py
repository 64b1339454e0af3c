"""Which position each scoring head reads, checked directly: the last real token of each option (multiple
choice) or of the sequence (classification), after truncation from the left and before right padding.

Expectations are written from the raw text (one token per character, tests/finetune/chartasks.py): the
sequence is the text's last ``seq`` characters, the head reads position ``min(len(text), seq) - 1``. The
model-level checks compare the head's scores with the head applied by hand to the final hidden state at those
positions, and show that reading any other position (the last padded one) would give other scores.
"""

from __future__ import annotations

import pytest
import torch
from chartasks import EOD, char_config, char_task, ids, use_char_tokenizer

from megatron_biomed.data.gpt_dataset import collate
from megatron_biomed.models.heads import ScoringHead, find_head, flatten_choices, head_forward

SEQ = 16
# Multiple choice (medqa rows, the biomedlm template "{question} {option}"): some options fill SEQ or are
# longer (truncated from the left: the option's end is kept), the others are padded.
MC_ITEMS = [
    ("Which?", ["red", "a long green option", "cat", "dog eagle"]),
    ("Pick one", ["purple!", "cat", "a horse", "mouse or frog"]),
]
MC_ROWS = [{"question": q, "options": dict(zip("ABCD", opts, strict=True)), "answer_idx": "A"} for q, opts in MC_ITEMS]
MC_TEXTS = [[f"{q} {o}" for o in opts] for q, opts in MC_ITEMS]
# Classification (PubMedQA, the biomedlm template "{context} {question}"): the first context is long (kept: its
# last 16 characters, "t goes on Is it?").
PQA = {
    "1": {"QUESTION": "Is it?", "CONTEXTS": ["a very long context", "that goes on"], "final_decision": "yes"},
    "2": {"QUESTION": "Why?", "CONTEXTS": ["short"], "final_decision": "no"},
}
PQA_TEXTS = ["a very long context that goes on Is it?", "short Why?"]


def _want_row(text: str) -> tuple[list[int], int]:
    """(tokens, read position) of ``text`` by hand: its last SEQ characters, then padding."""
    kept = ids(text)[-SEQ:]
    return kept + [EOD] * (SEQ - len(kept)), len(kept) - 1


def test_scoring_head_reads_the_given_position_of_each_row():
    """Every (position, row) of the hidden states is distinct; with an identity projection the head's output
    is exactly the hidden state it pooled."""
    s, b, h = 7, 4, 3
    hidden = torch.arange(s * b * h, dtype=torch.float32).view(s, b, h)
    head = ScoringHead(h, h, bias=False, init_std=0.02, dtype=torch.float32, seed=0)
    with torch.no_grad():
        head.proj.weight.copy_(torch.eye(h))
    out = head(hidden, torch.tensor([6, 0, 3, 5]))
    assert torch.equal(out, torch.stack([hidden[6, 0], hidden[0, 1], hidden[3, 2], hidden[5, 3]]))


def test_multiple_choice_rows_keep_each_options_end(monkeypatch, tmp_path):
    task = char_task(monkeypatch, tmp_path, "mc", MC_ROWS, seq=SEQ)
    samples = task.build_datasets((8, 0))[0].samples
    for sample, texts in zip(samples, MC_TEXTS, strict=True):
        for c, text in enumerate(texts):
            tokens, last = _want_row(text)
            assert sample["tokens"][c].tolist() == tokens, text
            assert int(sample["last_index"][c]) == last, text
    # Spelled out: the long option keeps its last 16 characters and is read at 15; "Which? red" at 9.
    assert samples[0]["tokens"][1].tolist() == ids("ong green option")
    assert samples[0]["last_index"].tolist() == [9, 15, 9, 15] and samples[1]["last_index"].tolist() == [15, 11, 15, 15]


def test_classification_rows_keep_the_question(monkeypatch, tmp_path):
    task = char_task(monkeypatch, tmp_path, "classify", PQA, seq=SEQ)
    samples = task.build_datasets((8, 0))[0].samples
    assert len(samples) == 2
    for sample, text in zip(samples, PQA_TEXTS, strict=True):
        tokens, last = _want_row(text)
        assert sample["tokens"][0].tolist() == tokens and int(sample["last_index"][0]) == last, text
    assert samples[0]["tokens"][0].tolist() == ids("t goes on Is it?")
    assert samples[0]["last_index"].tolist() == [15] and samples[1]["last_index"].tolist() == [9]


@pytest.mark.parametrize("task_name", ["mc", "classify"])
def test_head_scores_the_hidden_state_at_the_last_real_token(task_name, monkeypatch, tmp_path, single_rank_parallel):
    """The head's scores for a micro-batch (items x options flattened to rows) equal the head applied by hand to
    the final hidden state at each row's last real token, found from the raw text; the last padded position
    (or any position but the right one) would score differently."""
    from inprocess import build

    use_char_tokenizer(monkeypatch)
    rows, texts = (MC_ROWS, MC_TEXTS) if task_name == "mc" else (PQA, [[t] for t in PQA_TEXTS])
    task, model = build(char_config(tmp_path, task_name, rows, seq=SEQ))
    batch = collate(task.build_datasets((8, 0))[0].samples)
    flat = flatten_choices(batch, SEQ)
    head = find_head(model)
    with torch.no_grad():
        scores = head_forward(model, flat)
        hidden = model(flat["tokens"], flat["position_ids"], None,
                       output_processor=lambda *, hidden_states, **_: hidden_states)  # fmt: skip
        # [s, rows, h]; the rows are item 0's options, then item 1's.
        reads = [_want_row(t)[1] for item in texts for t in item]
        want = head.proj(torch.stack([hidden[p, r] for r, p in enumerate(reads)]))
        at_end = head.proj(hidden[SEQ - 1])
    assert scores.shape == want.shape == (len(reads), task.head_outputs())
    assert torch.allclose(scores, want, rtol=0, atol=1e-6), (scores, want)  # measured 0 (the same operations)
    padded = [r for r, p in enumerate(reads) if p < SEQ - 1]
    assert padded and (scores[padded] - at_end[padded]).abs().min() > 1e-3
