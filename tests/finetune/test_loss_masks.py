"""SFT and DPO samples position by position against expectations written by hand from the raw text.

Each expectation is built from the chat template's text, written out literally here ("User: ...\\n",
"Assistant: ", the response, the closing end-of-document), one token per character: position ``i`` reads
token ``i`` and its label is token ``i + 1``, trained on where that token is part of a response or is the
closing end-of-document. Every position is compared (tokens, labels, loss mask, position ids, document ids,
padding), and for SFT the loss itself is compared with a float64 computation over each document alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from chartasks import EOD, char_config, char_task, chat, ids, positions, use_char_tokenizer

from megatron_biomed.data.gpt_dataset import collate
from megatron_biomed.finetune.encoding import document_attention_mask


def _first_difference(got: list, want: list) -> str:
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        if a != b:
            return f"position {i}: got {a}, want {b}\n got  {got}\n want {want}"
    return ""


def assert_sample(sample: dict, docs: list[list[tuple[int, int, int]]], seq: int, row=None) -> None:
    """``sample`` (one row of it when ``row`` is given) holds ``docs`` in order, then padding to ``seq``."""
    pick = (lambda k: sample[k]) if row is None else (lambda k: sample[k][row])
    got = {k: pick(k).tolist() for k in ("tokens", "labels", "loss_mask", "position_ids")}
    want = {"tokens": [], "labels": [], "loss_mask": [], "position_ids": [], "doc_ids": []}
    for d, doc in enumerate(docs):
        for p, (x, y, m) in enumerate(doc):
            want["tokens"].append(x)
            want["labels"].append(y)
            want["loss_mask"].append(float(m))
            want["position_ids"].append(p)
            want["doc_ids"].append(d)
    real = len(want["tokens"])
    assert real <= seq
    for k in ("tokens", "labels", "loss_mask", "position_ids"):
        assert len(got[k]) == seq, (k, len(got[k]))
        why = _first_difference(got[k][:real], want[k])
        assert not why, f"{k}: {why}"
    # Padding: the pad id, never trained on.
    assert got["tokens"][real:] == [EOD] * (seq - real)
    assert got["loss_mask"][real:] == [0.0] * (seq - real), got["loss_mask"]
    if "doc_ids" in sample:
        doc_ids = pick("doc_ids").tolist()
        assert doc_ids == want["doc_ids"] + [-1] * (seq - real), doc_ids


def test_sft_prompt_response_and_end_of_document_masks(monkeypatch, tmp_path):
    """One example per sequence: a prompt/response row, a multi-turn conversation with a system line (every
    user turn and assistant prefix masked, both replies trained), and a chatml conversation."""
    records = [
        {"prompt": "ab", "response": "cd"},
        {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "a"},
                      {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"},
                      {"role": "assistant", "content": "d"}]},
    ]  # fmt: skip
    task = char_task(monkeypatch, tmp_path, "sft", records, "task.pack=false", seq=64)
    samples = task.build_datasets((8, 0))[0].samples
    want = [
        positions(chat("ab", "cd")),
        positions([("be brief\n", False)] + chat("a", "b") + chat("c", "d")),
    ]
    assert len(samples) == 2
    for sample, doc in zip(samples, want, strict=True):
        assert_sample(sample, [doc], 64)
    # Spelled out for the first: 23 positions; labels 19..21 are "cd\n", label 22 the end-of-document.
    assert samples[0]["loss_mask"].tolist() == [0.0] * 19 + [1.0] * 4 + [0.0] * 41

    row = [{"prompt": "a", "response": "b"}]
    chatml = char_task(monkeypatch, tmp_path, "sft", row, "task.chat_template=chatml", seq=64)
    sample = chatml.build_datasets((8, 0))[0].samples[0]
    pieces = [("<|im_start|>user\na<|im_end|>\n", False), ("<|im_start|>assistant\n", False),
              ("b<|im_end|>\n", True)]  # fmt: skip
    assert_sample(sample, [positions(pieces)], 64)


def test_sft_packed_boundaries_and_padding(monkeypatch, tmp_path):
    """Two documents share the first sequence (23 + 22 positions of 48), the third starts the next: the last
    label of a document is its own end-of-document (never the next document's first token), the next
    document's first position is a prompt position, position ids restart, and attention stays inside."""
    records = [{"prompt": "ab", "response": "cd"}, {"prompt": "x", "response": "yz"}, {"prompt": "q", "response": "r"}]
    task = char_task(monkeypatch, tmp_path, "sft", records, "task.pack=true", seq=48)
    assert task.packs
    samples = task.build_datasets((8, 0))[0].samples
    docs = [positions(chat("ab", "cd")), positions(chat("x", "yz")), positions(chat("q", "r"))]
    assert [len(d) for d in docs] == [23, 22, 21]
    assert len(samples) == 2
    assert_sample(samples[0], docs[:2], 48)
    assert_sample(samples[1], docs[2:], 48)
    # The boundary, spelled out: position 22 is trained on the end-of-document, position 23 reads "U".
    assert samples[0]["labels"][22] == EOD and samples[0]["loss_mask"][21:24].tolist() == [1.0, 1.0, 0.0]
    assert samples[0]["tokens"][23] == ids("U")[0] and samples[0]["position_ids"][23] == 0

    # The attention mask (True = masked), every entry: causal within a document, nothing across; a padding
    # position sees only itself.
    doc = samples[0]["doc_ids"].tolist()
    want = torch.ones(48, 48, dtype=torch.bool)
    for i in range(48):
        for j in range(48):
            if doc[i] < 0:
                want[i, j] = i != j
            else:
                want[i, j] = not (j <= i and doc[j] == doc[i])
    assert torch.equal(document_attention_mask(samples[0]["doc_ids"][None])[0, 0], want)


def test_sft_truncation_cuts_the_end_and_drops_what_has_no_response(monkeypatch, tmp_path):
    """A document longer than the sequence keeps its first positions (its end-of-document label is cut, so not
    trained on); a document whose response is cut away entirely is dropped."""
    records = [{"prompt": "ab", "response": "cdefgh"}, {"prompt": "a long prompt here", "response": "z"}]
    task = char_task(monkeypatch, tmp_path, "sft", records, "task.pack=false", seq=24)
    samples = task.build_datasets((8, 0))[0].samples
    full = positions(chat("ab", "cdefgh"))
    assert len(full) == 27 and len(samples) == 1
    assert_sample(samples[0], [full[:24]], 24)
    assert EOD not in samples[0]["labels"].tolist()
    assert samples[0]["loss_mask"].tolist() == [0.0] * 19 + [1.0] * 5


def test_dpo_pair_masks(monkeypatch, tmp_path):
    """Each pair is [chosen, rejected], one document per row, the same prompt masked in both; a pair whose
    rejected side is cut (its end-of-document falls outside) keeps its trained response tokens; a pair with
    one side's response cut away entirely is dropped."""
    records = [
        {"prompt": "hi", "chosen": "red", "rejected": "cat!"},
        {"prompt": "q", "chosen": "ok", "rejected": "a much longer no"},
        {"prompt": "a prompt of twenty-four", "chosen": "y", "rejected": "n"},
    ]
    task = char_task(monkeypatch, tmp_path, "dpo", records, seq=32)
    samples = task.build_datasets((8, 0))[0].samples
    assert len(samples) == 2
    assert_sample(samples[0], [positions(chat("hi", "red"))], 32, row=0)
    assert_sample(samples[0], [positions(chat("hi", "cat!"))], 32, row=1)
    assert_sample(samples[1], [positions(chat("q", "ok"))], 32, row=0)
    rejected = positions(chat("q", "a much longer no"))
    assert len(rejected) > 32
    assert_sample(samples[1], [rejected[:32]], 32, row=1)
    assert samples[1]["loss_mask"][1].tolist() == [0.0] * 18 + [1.0] * 14


def _doc_logps64(model64, doc) -> torch.Tensor:
    """Float64 log-probs of a document's labels, the document alone through the float64 model."""
    x = torch.tensor([[t for t, _, _ in doc]])
    n = x.shape[1]
    logits = model64(x, torch.arange(n)[None], None).double()
    labels = torch.tensor([y for _, y, _ in doc])
    return F.log_softmax(logits[0], -1).gather(-1, labels[:, None])[:, 0]


def test_sft_packed_loss_equals_float64_sum_over_response_labels(monkeypatch, tmp_path, single_rank_parallel):
    """The SFT loss of a packed sequence (one fp32 forward) equals the float64 sum of -log p over exactly the
    trained positions of each document, each run alone through a float64 copy of the model; the count is the
    number of trained positions."""
    from inprocess import build, loss_of

    from megatron_biomed.finetune.sft import SFTTask

    records = [{"prompt": "ab", "response": "cd"}, {"prompt": "x", "response": "yz"}]
    use_char_tokenizer(monkeypatch)
    task, model = build(char_config(tmp_path, "sft", records, "task.pack=true", seq=48))
    assert isinstance(task, SFTTask)
    sample = task.build_datasets((8, 0))[0].samples[0]
    docs = [positions(chat("ab", "cd")), positions(chat("x", "yz"))]
    with torch.no_grad():
        total, n, _ = loss_of(task, model, collate([sample]))
        model.double()  # the same weights, exactly, in float64
        want = 0.0
        for doc in docs:
            lp = _doc_logps64(model, doc)
            want -= sum(float(lp[p]) for p, (_, _, m) in enumerate(doc) if m)
    assert int(n) == sum(m for doc in docs for _, _, m in doc) == 8
    assert abs(float(total) - want) <= 1e-7 * abs(want), (float(total), want)  # measured 2.1e-9
