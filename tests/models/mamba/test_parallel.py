"""The mamba2 family trains through the ordinary loop (tools/pretrain.py, megatron-core's mock data), and TP2,
PP2 and TP2 x PP2 train like one process; a checkpoint saved at TP2 loads at TP1 exactly.

As tests/training/: one process initialises tiny-mamba (2 B/C groups, so TP2 works) and saves it; every layout
starts from that checkpoint (``checkpoint.init_from``; dist_checkpointing reshards in_proj's [z|x|B|C|dt] and
conv's [x|B|C] parts per TP rank) and trains 10 steps in fp32 on the same global batches. Measured on CPU
(largest relative difference to one process over the 10 steps): loss 2.0e-8 (TP2), 4.0e-8 (PP2), 4.1e-8
(TP2 x PP2), 4.1e-8 (PP2 x VPP2), 4.1e-8 (DP2, distributed optimizer); grad norm 3.4e-7 (TP2), 1.0e-7 (PP2),
3.4e-7 (TP2 x PP2), 1.5e-7 (PP2 x VPP2), 1.0e-7 (DP2 distributed optimizer). The tolerances below leave margins
of 15-50x.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from launch import BASE, assert_losses_close, read_metrics, run_pretrain

PRESET = "tiny-mamba"
STEPS = 10
LOSS_RTOL = 1e-6
GRAD_NORM_RTOL = 5e-6
PARAM_RTOL = 2e-5  # final parameters, relative to each tensor's largest value
LAYOUTS = {
    "tp2": (2, ["parallel.tensor_model_parallel_size=2"]),
    "pp2": (2, ["parallel.pipeline_model_parallel_size=2"]),
    "tp2-pp2": (4, ["parallel.tensor_model_parallel_size=2", "parallel.pipeline_model_parallel_size=2"]),
    # 4 micro-batches of 2 per step: the interleaved schedule runs 2 model chunks per stage
    "pp2-vpp2": (2, ["parallel.pipeline_model_parallel_size=2", "parallel.virtual_pipeline_model_parallel_size=2"]),
    "dp2-distopt": (2, ["parallel.use_distributed_optimizer=true"]),
}
RUN = BASE + [f"train.train_iters={STEPS}"]


def _run(nproc, extra, work, name):
    metrics = work / f"{name}.jsonl"
    proc = run_pretrain(nproc, RUN + extra + [f"logging.metrics_file={metrics}"], work, preset=PRESET)
    return read_metrics(metrics), proc


@pytest.fixture(scope="module")
def init_weights(tmp_path_factory):
    work = tmp_path_factory.mktemp("mamba-init")
    run_pretrain(1, RUN + ["train.train_iters=0", f"checkpoint.save={work / 'ckpt'}"], work, preset=PRESET)
    return work / "ckpt"


@pytest.fixture(scope="module")
def final_weights():
    """Layout name -> its checkpoint after the 10 steps (the reference's under "ref")."""
    return {}


@pytest.fixture(scope="module")
def reference(init_weights, tmp_path_factory, final_weights):
    work = tmp_path_factory.mktemp("mamba-ref")
    metrics, _ = _run(1, [f"checkpoint.init_from={init_weights}", f"checkpoint.save={work / 'final'}"], work, "ref")
    final_weights["ref"] = work / "final"
    return metrics


def test_one_process_trains(reference):
    """tools/pretrain.py's ordinary loop (LanguageModelTask, Trainer) trains the family unchanged."""
    assert sorted(reference) == list(range(1, STEPS + 1))
    assert reference[STEPS]["loss"] < reference[1]["loss"] - 0.05


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_layout_matches_one_process(layout, init_weights, reference, final_weights, tmp_path):
    nproc, extra = LAYOUTS[layout]
    got, _ = _run(nproc, extra + [f"checkpoint.init_from={init_weights}", f"checkpoint.save={tmp_path / 'final'}"],
                  tmp_path, layout)  # fmt: skip
    final_weights[layout] = tmp_path / "final"
    assert sorted(got) == list(range(1, STEPS + 1))
    rel = lambda k: max(abs(got[i][k] - reference[i][k]) / abs(reference[i][k]) for i in got)  # noqa: E731
    print(f"{layout}: largest relative difference to one process: loss {rel('loss'):.1e}, "
          f"grad norm {rel('grad_norm'):.1e}")  # fmt: skip
    assert_losses_close(got, reference, range(1, STEPS + 1), rtol=LOSS_RTOL)
    for it in range(1, STEPS + 1):
        a, b = got[it]["grad_norm"], reference[it]["grad_norm"]
        assert abs(a - b) <= GRAD_NORM_RTOL * b, f"iteration {it}: grad norm {a} vs {b}"


def test_final_parameters_match_one_process(final_weights, tmp_path):
    """After the 10 steps every parameter of every layout equals the one-process run's (the checkpoints saved at
    TP2, PP2 and TP2 x PP2 loaded into one process). Measured, relative to each tensor's largest value: 1.9e-6
    (TP2 and TP2 x PP2), 4.5e-7 (PP2); the tolerance leaves a margin of about 10x."""
    from launch import run_tool

    others = [name for name in LAYOUTS if name in final_weights]
    if not others:
        pytest.skip("no layout run in this session")
    args = ["--ref", str(final_weights["ref"]), "--out", str(tmp_path / "diffs.json")]
    for name in others:
        args += ["--other", f"{name}={final_weights[name]}"]
    run_tool(Path(__file__).with_name("compare_checkpoints.py"), 1, args, tmp_path, timeout=300)
    diffs = json.loads((tmp_path / "diffs.json").read_text())
    print("final parameters, largest relative difference:", {k: f"{v:.1e}" for k, v in diffs.items()})
    for name, diff in diffs.items():
        assert diff <= PARAM_RTOL, f"{name}: largest parameter difference {diff:.2e} (relative)"


def test_saved_at_tp2_loads_at_tp1_exactly(init_weights, reference, tmp_path):
    """The initial weights loaded at TP2 and saved again there (per-rank shards of in_proj/conv parts) train at
    TP1 bit for bit like the original checkpoint."""
    run_pretrain(
        2,
        RUN + ["parallel.tensor_model_parallel_size=2", "train.train_iters=0", f"checkpoint.init_from={init_weights}",
               f"checkpoint.save={tmp_path / 'tp2'}"],
        tmp_path, preset=PRESET,
    )  # fmt: skip
    got, _ = _run(1, [f"checkpoint.init_from={tmp_path / 'tp2'}", "train.exit_after_iters=3"], tmp_path, "tp1")
    for it in (1, 2, 3):
        assert got[it]["loss"] == reference[it]["loss"], f"iteration {it}"


def test_kill_and_resume_is_bit_exact(init_weights, reference, tmp_path):
    """Killed (SIGKILL) at iteration 8 after its checkpoint at 5; the resumed steps 6-10 are the straight run's."""
    proc = run_pretrain(
        1,
        RUN + [f"checkpoint.init_from={init_weights}", f"checkpoint.save={tmp_path / 'ck'}",
               "checkpoint.save_interval=5", "train.inject_kill_at=8", f"logging.metrics_file={tmp_path / 'a.jsonl'}"],
        tmp_path, preset=PRESET, check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    got, proc = _run(1, [f"checkpoint.load={tmp_path / 'ck'}"], tmp_path, "b")
    assert "resumed from" in proc.stdout and "at iteration 5" in proc.stdout
    assert sorted(got) == list(range(6, STEPS + 1))
    for it in got:
        assert got[it]["loss"] == reference[it]["loss"] and got[it]["grad_norm"] == reference[it]["grad_norm"], it
