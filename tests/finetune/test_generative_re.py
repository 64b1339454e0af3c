"""Generative relation extraction end to end on a tiny model: SFT pairs from a DDI-layout file, a few seconds of
SFT in this process, greedy generations parsed and scored by the ``ddi_re`` generation task.

The margin: the untrained model never writes a parsable triple (F1 0); after SFT on the same small slice it writes
the template and the right triples (F1 >= 0.75 on the 4 documents it was trained on -- a check that the SFT data,
the prompt and the parser meet, not a generalisation claim). Plus the registry entries and their request files."""

from __future__ import annotations

import json

import torch
from chartasks import EOD, char_config, use_char_tokenizer
from inprocess import build, loss_of

from megatron_biomed.data.gpt_dataset import collate
from megatron_biomed.data.tasks import ReadReport
from megatron_biomed.eval.generation import TASKS, chat_prompt, sft_pairs
from megatron_biomed.inference.generate import SamplingConfig, generate

# Our own DDI-layout documents (BioGPT's raw JSON): short made-up drug names, one triple each, one without.
DOCS = {
    "d1": {"abstract": "ab with cd.", "triples": [{"drug": "ab", "target": "cd", "interaction": "effect"}]},
    "d2": {"abstract": "ef with gh.", "triples": [{"drug": "ef", "target": "gh", "interaction": "advise"}]},
    "d3": {"abstract": "cd with ef.", "triples": [{"drug": "cd", "target": "ef", "interaction": "int"}]},
    "d4": {"abstract": "gh with ab.", "triples": [{"drug": "gh", "target": "ab", "interaction": "mechanism"}]},
    "d5": {"abstract": "nothing here.", "triples": []},
}  # fmt: skip
STEPS = 200


def _decode(ids) -> str:
    return "".join(chr(i - 1) for i in ids)  # the character tokenizer's inverse on ASCII (chartasks.ids)


def _generate(model, cfg, requests) -> list[str]:
    out = generate(model, [[ord(c) % 250 + 1 for c in r.prompt] for r in requests], SamplingConfig(max_new_tokens=60),
                   vocab_size=cfg.model.vocab_size, max_length=cfg.model.seq_length, eos_id=EOD)  # fmt: skip
    return [_decode(g.ids).strip() for g in out]


def test_sft_pairs_and_requests_agree(tmp_path):
    path = tmp_path / "ddi.json"
    path.write_text(json.dumps(DOCS))
    report = ReadReport(str(path))
    pairs = sft_pairs("ddi_re", path, report=report)
    assert [p[0] for p in pairs] == ["d1", "d2", "d3", "d4"]
    assert pairs[0][1:] == ("ab with cd.", "the interaction between ab and cd is effect.")
    assert report.skipped == {"no triple to write (BioGPT leaves these out)": 1}
    requests = TASKS.get("ddi_re").load(path, None)
    assert [r.prompt for r in requests] == [chat_prompt(p[1]) for p in pairs]
    assert requests[0].prompt == "User: ab with cd.\nAssistant: " and requests[0].gold == (("ab", "effect", "cd"),)
    scores = TASKS.get("ddi_re").score([p[2] for p in pairs], requests)  # the references score 1
    assert [(m, v) for m, v, _ in scores] == [("f1", 1.0), ("precision", 1.0), ("recall", 1.0)]
    assert {TASKS.get(n).max_new_tokens for n in ("bc5cdr_re", "kd_dti_re", "ddi_re")} == {512}
    assert all(TASKS.get(n).stop_at_eod for n in ("bc5cdr_re", "kd_dti_re", "ddi_re", "meqsum"))


def test_meqsum_requests_and_rouge(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps({"file": "a", "chq": "SUBJECT: x\nMESSAGE: who makes y", "summary": "Who makes y?"})
                    + "\n")  # fmt: skip
    (req,) = TASKS.get("meqsum").load(path, None)
    assert req.prompt.startswith("User: Summarize") and req.prompt.endswith("who makes y\nAssistant: ")
    scores = TASKS.get("meqsum").score(["Who makes y?"], [req])
    assert [(m, v) for m, v, _ in scores] == [("rouge1", 1.0), ("rouge2", 1.0), ("rougeL", 1.0)]


def test_tiny_model_learns_the_template_and_the_triples(monkeypatch, tmp_path, single_rank_parallel):
    path = tmp_path / "ddi.json"
    path.write_text(json.dumps(DOCS))
    rows = [{"id": u, "prompt": p, "response": r} for u, p, r in sft_pairs("ddi_re", path)]
    use_char_tokenizer(monkeypatch)
    cfg = char_config(tmp_path, "sft", rows, "model.seq_length=96", "task.pack=false", seq=96)
    task, model = build(cfg)
    requests = TASKS.get("ddi_re").load(path, None)
    score = TASKS.get("ddi_re").score
    before = score(_generate(model, cfg, requests), requests)
    assert before[0][1] == 0.0, before

    train, _ = task.build_datasets((len(rows), 0))
    batch = collate(train.samples)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(STEPS):
        total, n, _ = loss_of(task, model, batch)
        opt.zero_grad()
        (total / n).backward()
        opt.step()
    texts = _generate(model, cfg, requests)
    after = score(texts, requests)
    assert after[0][0] == "f1" and after[0][1] >= 0.75, (after, texts)
    assert sum(t.startswith("the interaction between ") for t in texts) >= 3, texts


def test_make_generative_sft_tool_writes_sft_rows(tmp_path, capsys):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
    import make_generative_sft

    from megatron_biomed.data.tasks import read_sft

    path = tmp_path / "ddi.json"
    path.write_text(json.dumps(DOCS))
    out = tmp_path / "sft" / "train.jsonl"
    assert make_generative_sft.main(["--format", "ddi_re", "--input", str(path), "--output", str(out)]) == 0
    examples = read_sft(out)
    assert [e.uid for e in examples] == ["d1", "d2", "d3", "d4"]
    assert examples[0].messages == (("user", "ab with cd."),
                                    ("assistant", "the interaction between ab and cd is effect."))  # fmt: skip
    assert "skipped 1 (1 no triple to write" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text('{"d1": {"abstract": "x"}}')
    assert make_generative_sft.main(["--format", "ddi_re", "--input", str(bad), "--output", str(out)]) == 1
    assert "bad.json:1: document 'd1': missing 'triples'" in capsys.readouterr().err
