"""``--weights ema`` reaches the checkpoint loader from tools/evaluate.py and tools/generate.py: asked of a
checkpoint saved without a moving average, both refuse it by name instead of scoring the model's own weights.
(That the average loads exactly as the weights is tests/training/test_recipe_options.py's.)"""

from __future__ import annotations

import pytest

from megatron_biomed.checkpoint import CheckpointError


def test_evaluate_scores_the_average_only_where_one_was_saved(toy, tmp_path):
    from megatron_biomed.eval.cli import build_arg_parser, evaluate

    corpus = tmp_path / "c.txt"
    corpus.write_text("red apples are red.\n")
    argv = ["--load", str(toy["pretrained"]), "--corpus", f"c={corpus}", "--no-progress"]
    assert build_arg_parser().parse_args(argv).weights == "model"
    with pytest.raises(CheckpointError, match="holds no 'ema' weights"):
        evaluate(build_arg_parser().parse_args(argv + ["--weights", "ema"]))


def test_generate_loads_the_average_only_where_one_was_saved(toy):
    from megatron_biomed.inference.generate import build_arg_parser, generate_from_checkpoint

    argv = ["--load", str(toy["pretrained"]), "--prompt", "red", "--max-new-tokens", "2", "--weights", "ema"]
    with pytest.raises(CheckpointError, match="holds no 'ema' weights"):
        generate_from_checkpoint(build_arg_parser().parse_args(argv))
