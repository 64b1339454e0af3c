"""BioMamba's generative evaluation (LeoYML/BioMamba @ e61db22): the yes/no parse of ft_biomamba/evaluate.py on
hand-written generations, its accuracy / macro-F1, ROUGE against ``rouge_score`` called directly, the clinical
requests on public notes converted to MIMIC's discharge.csv layout, and the whole path (prompts, greedy
generation with the cache, parse, metric) on a tiny Mamba2 against transformers' ``Mamba2ForCausalLM`` decoding
greedily on its own."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
import torch

from megatron_biomed.data.metrics.text import rouge_f1
from megatron_biomed.eval.generation import (
    TASKS,
    GenerationRequest,
    completion_requests,
    discharge_requests,
    label_scores,
    load_requests,
    yes_no_answer,
)

ROOT = Path(__file__).resolve().parents[2]
COLUMNS = ["note_id", "subject_id", "hadm_id", "note_type", "note_seq", "charttime", "storetime", "text"]


@pytest.mark.parametrize("text, want", [
    (" yes", "yes"), ("Yes.", "yes"), ("  YES, because", "yes"), ("\n\nno", "no"), ("No\nyes", "no"),
    ("Maybe", "maybe"), (": - yes", "yes"), ("Answer: no", "no"), ("The answer is yes", "yes"),
    ("not clear", "no"), ("none of these", "no"), ("yesterday", "yes"),  # their startswith rule
    ("I think (yes) here", "yes"), ("it is unclear", "maybe"), ("b c d e f yes", "b"),  # five words, then first
    ("True", "yes"), ("n", "no"), ("unknown", "maybe"), ("", ""), ("   ", ""), ("Perhaps so", "perhaps"),
])  # fmt: skip
def test_yes_no_parse_is_theirs(text, want):
    """extract_answer + normalize_answer: stripped, first line only, lower-cased,
    'answer:'-style prefixes and leading punctuation removed, startswith yes/no/maybe, else yes/no/maybe/
    uncertain/unclear among the first five words, else the first word; then the synonyms."""
    assert yes_no_answer(text) == want


def test_accuracy_and_macro_f1_by_hand():
    """sklearn's macro average over every label seen (a stray 'the' is a label of F1 0), zero_division 0."""
    preds, refs = ["yes", "yes", "no", "the", "no"], ["yes", "no", "no", "yes", "no"]
    (acc_name, acc, hits), (f1_name, f1, _) = label_scores(preds, refs)
    assert (acc_name, f1_name) == ("acc", "macro_f1") and hits == [1.0, 0.0, 1.0, 0.0, 1.0]
    assert acc == pytest.approx(3 / 5)
    # yes: tp 1, fp 1, fn 1 -> 0.5; no: tp 2, fp 0, fn 1 -> 0.8; the: 0
    assert f1 == pytest.approx((0.5 + 0.8 + 0.0) / 3)


def test_rouge_is_rouge_score_with_their_settings():
    from rouge_score import rouge_scorer

    preds = ["The patient was discharged home in stable condition.", "", "running fevers, cultures negative",
             "Aspirin 81 mg daily"]  # fmt: skip
    refs = ["Patient discharged home, stable.", "some reference", "Runs a fever; blood cultures were negative.",
            "aspirin 81mg daily; follow up in 2 weeks"]  # fmt: skip
    ours = rouge_f1(preds, refs)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    for i, (p, r) in enumerate(zip(preds, refs)):
        direct = scorer.score(r, p) if p else None
        for t in ("rouge1", "rouge2", "rougeL"):
            assert ours[t][i] == (direct[t].fmeasure if direct else 0.0), (t, i)
    # by hand: "the cat sat" vs "the cat sat on the mat": P 1, R 1/2 -> F 2/3; bigrams P 1, R 2/5 -> 4/7
    hand = rouge_f1(["the cat sat"], ["the cat sat on the mat"])
    assert hand["rouge1"][0] == pytest.approx(2 / 3) and hand["rouge2"][0] == pytest.approx(4 / 7)
    # the stemmer is on: "running fevers" matches "runs a fever" on two stems
    assert rouge_f1(["running fevers"], ["runs fever"])["rouge1"][0] == pytest.approx(1.0)
    assert TASKS.get("mimic_completion").max_new_tokens == TASKS.get("mimic_discharge").max_new_tokens == 128
    assert TASKS.get("bioasq_generative").max_new_tokens == 8


def _write_csv(path: Path, notes: list[tuple[str, str]]) -> Path:
    """(subject_id, text) rows in discharge.csv's layout."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for i, (subject, text) in enumerate(notes):
            w.writerow([f"{subject}-DS-{i}", subject, f"2{i:07d}", "DS", str(i + 1), "2180-05-06 00:00:00",
                        "2180-05-07 10:00:00", text])  # fmt: skip
    return path


def test_public_notes_in_the_mimic_layout(toy, tmp_path):
    """The staged MTSamples reports (public, de-identified) written as a discharge.csv in a tmp dir: completion
    requests cut each held-out note's tokens at half; the discharge split finds the admission / discharge
    sections (MTSamples flattened its line breaks to ":," after a header; restored here as line breaks)."""
    from megatron_biomed.tokenizer import load_tokenizer

    src = ROOT / ".." / "shared" / "data" / "clinical_notes" / "mtsamples_first401_train.jsonl"
    if not src.exists():
        pytest.skip(f"{src} is not staged")
    rows = [json.loads(line) for line in src.read_text().splitlines() if line.strip()]
    header = re.compile(r"([A-Z][A-Z /&()-]{2,}):,\s*")
    notes = [(str(r["id"] % 50), header.sub(lambda m: f"\n{m.group(1)}:\n", r["transcription"])) for r in rows]
    path = _write_csv(tmp_path / "discharge.csv", notes)
    tok = load_tokenizer(toy["tok"])
    comp = completion_requests(path, tok)
    assert 10 <= len(comp) <= 60  # 10% of the 50 patients: 5 of them
    held = {r.uid for r in comp}
    ids_of = {f"{subject}-DS-{i}": tok.encode(text) for i, (subject, text) in enumerate(notes)
              if f"{subject}-DS-{i}" in held}  # fmt: skip
    cuts = []
    for r in comp:
        ids = ids_of[r.uid]
        cut = min(len(ids) // 2, 1024)  # half the tokens, at most 1,024 of prefix
        assert r.prompt == tok.decode(ids[:cut]) and r.reference == tok.decode(ids[cut:])
        cuts.append(cut)
    assert 1024 in cuts and any(c < 1024 for c in cuts)  # both rules bite on these notes
    everyone = [(str(0), text) for _, text in notes]  # one patient: all notes held out
    dis = discharge_requests(_write_csv(tmp_path / "all.csv", everyone), tok)
    assert len(dis) >= 2
    for r in dis:
        assert r.prompt.startswith("Based on the following clinical information, write the discharge summary.\n\n"
                                   "Clinical Notes:\n") and r.prompt.endswith("\n\nDischarge Summary:")  # fmt: skip
        assert re.match(r"(HOSPITAL COURSE|ASSESSMENT (AND|&) PLAN|DISCHARGE \w+|FOLLOW.?UP):\n", r.reference)


# ---- end to end on a tiny Mamba2 --------------------------------------------------------------------------


@pytest.fixture
def mamba_generator(toy, tmp_path):
    pytest.importorskip("transformers")
    from mamba_reference import load_hf_weights, peaked_hf_mamba

    from megatron_biomed.config.loading import load_config
    from megatron_biomed.eval.runner import EvaluationTask
    from megatron_biomed.parallel.env import DistEnv, find_free_port
    from megatron_biomed.parallel.initialize import initialize_parallel, shutdown_parallel
    from megatron_biomed.tokenizer import load_run_tokenizer
    from megatron_biomed.training.loop import Trainer

    cfg = load_config("tiny-mamba", overrides=[f"data.tokenizer={toy['tok']}", "model.seq_length=192",
                                               "train.micro_batch_size=2", "train.global_batch_size=2"])  # fmt: skip
    ctx = initialize_parallel(cfg, DistEnv(0, 1, 0, "127.0.0.1", find_free_port(), "single"))
    try:
        trainer = Trainer(cfg, ctx, None, EvaluationTask(cfg), forward_only=True)
        hf = peaked_hf_mamba(cfg.model, tmp_path / "hf")
        load_hf_weights(trainer.model[0], cfg.model, tmp_path / "hf")
        yield trainer, hf, load_run_tokenizer(cfg)
    finally:
        shutdown_parallel()


def _hf_greedy(hf, ids: list[int], n: int, vocab: int) -> list[int]:
    """Their fallback decoding (evaluate.py): the whole prefix each step, argmax, n tokens (no stop)."""
    out = list(ids)
    with torch.no_grad():
        for _ in range(n):
            out.append(int(hf(torch.tensor([out])).logits[0, -1, :vocab].argmax()))
    return out[len(ids) :]


def test_generative_scoring_end_to_end_equals_transformers(mamba_generator, tmp_path):
    from megatron_biomed.eval.runner import generation_scores

    trainer, hf, tok = mamba_generator
    vocab, seq = trainer.cfg.model.vocab_size, trainer.cfg.model.seq_length
    bioasq = _bioasq_file(tmp_path / "bioasq.json")
    text = "CHIEF COMPLAINT:\nthe red cat saw the blue dog and the green frog. " * 3
    notes = _write_csv(tmp_path / "notes.csv", [(str(s), f"{text} note {s}.") for s in range(10)])
    for name, path in (("bioasq_generative", bioasq), ("mimic_completion", notes)):
        task = TASKS.get(name)
        reqs = load_requests(task, path, tok)
        log: list = []
        results = {r.metric: r.value for r in generation_scores(trainer, task, reqs, tok, log=log)}
        room = seq - task.max_new_tokens
        want = [tok.decode([t for t in _hf_greedy(hf, tok.encode(r.prompt)[:room], task.max_new_tokens, vocab)
                            if t != tok.eod_id]) for r in reqs]  # fmt: skip
        assert [row["generation"] for row in log] == want, name
        assert len({w for w in want}) > 1 or len(want) == 1  # the generations differ: the prompt matters
        scores = {m: v for m, v, _ in task.score(want, reqs)}
        assert results == pytest.approx(scores)
        print(f"{name}: {len(reqs)} requests, {results}; first generation {want[0][:60]!r}")
    assert isinstance(reqs[0], GenerationRequest) and len(reqs) == 1  # one patient of ten held out


def _bioasq_file(path: Path) -> Path:
    questions = [{"id": f"q{i}", "type": "yesno", "body": body, "exact_answer": ans,
                  "snippets": [{"text": s} for s in snips]} for i, (body, ans, snips) in enumerate([
        ("Is the cat red?", "yes", ["The red cat sat.", "A dog."]),
        ("Does the dog run?", "no", []),
        ("Is it blue?", "no", ["Blue whale seen."]),
    ])]  # fmt: skip
    path.write_text(json.dumps({"questions": questions}))
    return path


def test_evaluate_tool_scores_a_generation_task(toy, tmp_path):
    """tools/evaluate.py --benchmark bioasq_generative=FILE on the toy checkpoint (tiny GPT, one process): the
    task's rows in the report, one logged generation per question, acc recomputed from them."""
    from megatron_biomed.eval.cli import build_arg_parser, evaluate

    out = tmp_path / "report.json"
    args = build_arg_parser().parse_args([
        "--load", str(toy["pretrained"]), "--benchmark", f"bioasq_generative={_bioasq_file(tmp_path / 'b.json')}",
        "--output", str(out), "--log-samples", "--no-progress"])  # fmt: skip
    assert evaluate(args) == 0
    report = json.loads(out.read_text())
    assert [(r["task"], r["metric"], r["n"]) for r in report["results"]] == [
        ("bioasq_generative", "acc", 3), ("bioasq_generative", "macro_f1", 3)]  # fmt: skip
    rows = report["samples"]["bioasq_generative"]
    assert [r["reference"] for r in rows] == ["yes", "no", "no"] and all(r["generation"] for r in rows)
    acc = sum(yes_no_answer(r["generation"]) == r["reference"] for r in rows) / 3
    assert report["results"][0]["value"] == pytest.approx(acc) and [r["acc"] for r in rows] == [
        float(yes_no_answer(r["generation"]) == r["reference"]) for r in rows]  # fmt: skip
