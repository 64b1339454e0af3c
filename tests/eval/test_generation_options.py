"""tools/evaluate.py's decoding flags for generation tasks become the generator's SamplingConfig."""

from __future__ import annotations

import pytest

from megatron_biomed.eval.cli import build_arg_parser, generation_sampling
from megatron_biomed.eval.generation import TASKS
from megatron_biomed.inference.generate import SamplingError


def _args(*flags):
    return build_arg_parser().parse_args(["--load", "ckpt", "--benchmark", "ddi_re=x.json", *flags])


def test_default_is_the_tasks_greedy_decoding():
    s = generation_sampling(_args(), TASKS.get("ddi_re"))
    assert s.greedy and s.max_new_tokens == TASKS.get("ddi_re").max_new_tokens == 512
    assert generation_sampling(_args(), TASKS.get("meqsum")).max_new_tokens == 64


def test_sampling_flags_reach_the_generator():
    s = generation_sampling(_args("--temperature", "0.7", "--top-k", "5", "--top-p", "0.9", "--seed", "7",
                                  "--max-new-tokens", "32"), TASKS.get("meqsum"))  # fmt: skip
    assert (s.temperature, s.top_k, s.top_p, s.seed, s.max_new_tokens, s.greedy) == (0.7, 5, 0.9, 7, 32, False)
    assert generation_sampling(_args("--num-beams", "4"), TASKS.get("ddi_re")).num_beams == 4
    with pytest.raises(SamplingError, match="num_beams=4 is beam search"):
        generation_sampling(_args("--num-beams", "4", "--temperature", "1"), TASKS.get("ddi_re"))
    with pytest.raises(SamplingError, match="top_p=1.5"):
        generation_sampling(_args("--top-p", "1.5"), TASKS.get("meqsum"))


def test_evaluate_tool_scores_ddi_re_with_beams(toy, tmp_path):
    """tools/evaluate.py --benchmark ddi_re=FILE --num-beams 2 on the toy checkpoint: f1, precision, recall rows,
    one logged generation per document, f1 recomputed from the logged generations."""
    import json

    from megatron_biomed.eval.cli import evaluate

    docs = {f"d{i}": {"abstract": f"Drug{i} raises drug{i + 1} levels.",
                      "triples": [{"drug": f"Drug{i}", "target": f"drug{i + 1}", "interaction": "mechanism"}]}
            for i in range(3)}  # fmt: skip
    path = tmp_path / "ddi.json"
    path.write_text(json.dumps(docs))
    out = tmp_path / "report.json"
    args = build_arg_parser().parse_args([
        "--load", str(toy["pretrained"]), "--benchmark", f"ddi_re={path}", "--max-new-tokens", "8",
        "--num-beams", "2", "--output", str(out), "--log-samples", "--no-progress"])  # fmt: skip
    assert evaluate(args) == 0
    report = json.loads(out.read_text())
    assert [(r["task"], r["metric"], r["n"]) for r in report["results"]] == [
        ("ddi_re", "f1", 3), ("ddi_re", "precision", 3), ("ddi_re", "recall", 3)]  # fmt: skip
    rows = report["samples"]["ddi_re"]
    assert [r["reference"] for r in rows][0] == "the interaction between drug0 and drug1 is mechanism."
    requests = TASKS.get("ddi_re").load(path, None)
    want = TASKS.get("ddi_re").score([r["generation"] for r in rows], requests)
    assert [r["value"] for r in report["results"]] == pytest.approx([v for _, v, _ in want])
