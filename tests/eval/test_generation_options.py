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
