"""examples/biomamba/continue_pretrain_<size>.{sh,sbatch}: their dry-run plans, the configuration they pass to
tools/pretrain.py (80/10/10 blend from data/blends.py, GPT-NeoX-20B vocabulary padded to 50,288, per-corpus
validation, the public checkpoint as init_from) and the TP > 1 refusal. The launchers run with bash for real,
with a PYTHON that records its arguments; the recorded command line goes through pretrain's ``main`` here."""

from __future__ import annotations

import json

import pytest
from launch import ROOT
from test_launchers import captured_argv, captured_config, pretrain_in_process

from megatron_biomed.data.blends import get_blend
from megatron_biomed.models.registry import count_parameters

SIZES = {"130m": 129.0, "370m": 368.3, "780m": 780.2, "1.3b": 1343.8, "2.7b": 2702.6}
# launcher -> (world size, micro-batches per step)
PLANS = {
    "130m.sh": (8, 2), "370m.sh": (8, 4), "780m.sh": (8, 4), "1.3b.sh": (8, 8), "2.7b.sh": (8, 8),
    "130m.sbatch": (8, 2), "370m.sbatch": (8, 4), "780m.sbatch": (16, 2), "1.3b.sbatch": (32, 2),
    "2.7b.sbatch": (64, 1),
}  # fmt: skip


def _script(name: str):
    return ROOT / "examples" / "biomamba" / f"continue_pretrain_{name}"


@pytest.mark.parametrize("name", list(PLANS))
def test_dry_run_plan(name, tmp_path, capsys):
    rc, out, err = pretrain_in_process(captured_argv(_script(name), tmp_path), capsys)
    assert rc == 0, err
    plan = json.loads(out[out.index("plan: {") + len("plan: "):])
    world, micro = PLANS[name]
    assert (plan["world_size"], plan["data_parallel_size"], plan["num_microbatches"]) == (world, world, micro)
    assert plan["tensor_model_parallel_size"] == 1 and plan["precision"] == "bf16"
    assert plan["model"]["family"] == "mamba2"
    assert (plan["model"]["vocab_size"], plan["model"]["padded_vocab_size"]) == (50277, 50288)
    assert plan["tokens_per_step"] == 256 * 2048


@pytest.mark.parametrize("size", list(SIZES))
def test_recipe_configuration(size, tmp_path):
    cfg, _ = captured_config(_script(f"{size}.sh"), tmp_path, DATA_DIR="/d")
    m = cfg.model
    assert round(count_parameters(m, padded_vocab=True).total / 1e6, 1) == SIZES[size]
    assert (m.mamba_state_dim, m.mamba_head_dim, m.mamba_expand, m.mamba_num_groups) == (128, 64, 2, 1)
    prefixes = {"pubmed": "/d/pubmed_text_document", "c4": "/d/c4_en_text_document",
                "wikipedia": "/d/wikipedia_en_text_document"}  # fmt: skip
    assert [str(x) for x in cfg.data.blend] == [str(x) for x in get_blend("biomamba").resolve(prefixes)]
    assert cfg.data.tokenizer == "/d/gpt-neox-20b"
    assert [c.split("=", 1)[0] for c in cfg.train.eval_corpora] == ["pubmed", "c4", "wikipedia"]
    assert cfg.train.eval_interval > 0
    assert cfg.checkpoint.init_from == f"/d/checkpoints/mamba2-{size}"
    assert cfg.checkpoint.load == cfg.checkpoint.save  # a restarted job resumes instead of re-initialising


def test_tp2_is_refused_with_what_to_do(tmp_path, capsys):
    argv = captured_argv(_script("130m.sh"), tmp_path, TP=2)
    rc, out, err = pretrain_in_process(argv, capsys)
    assert rc != 0
    assert "1 B/C group" in out + err and "tensor_model_parallel_size=1" in out + err
