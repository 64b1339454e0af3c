"""benchmarks/gpu_check.py: the plumbing of the GPU check, on CPU.

Each step runs in its own process under its own timeout; a failing and a timed-out step are recorded and the
steps after them still run; the JSON is rewritten after every step; without CUDA every GPU step is recorded as
skipped with the reason. The test-only steps (_ok, _fail, _hang, _gpu) exist with
MEGATRON_BIOMED_GPU_CHECK_TEST_STEPS=1. The GPU steps themselves run only on a GPU machine.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from tool_scripts import load_script

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def _load():
    return load_script(SCRIPT, "gpu_check")


gc = _load()

STEP_KEYS = {"name", "status", "seconds", "timeout_s", "reason", "log"}
TOP_KEYS = {"schema", "started", "finished", "host", "dry_run", "dry_run_reason", "budget_s", "backends", "argv",
            "steps", "results", "targets", "elapsed_s"}  # fmt: skip


def _check_schema(data: dict) -> None:
    assert data["schema"] == gc.SCHEMA and TOP_KEYS <= set(data), sorted(TOP_KEYS - set(data))
    for s in data["steps"]:
        assert set(s) == STEP_KEYS and s["status"] in gc.STATUSES, s
        assert (s["reason"] is None) == (s["status"] == "ok"), s  # every non-ok step says why
        assert s["name"] in data["results"]
    for t in data["targets"]:
        assert {"name", "metric", "value", "threshold", "passed", "detail"} <= set(t)
    json.dumps(data)


def test_failing_and_timed_out_steps_are_recorded_and_the_check_goes_on(tmp_path, monkeypatch):
    monkeypatch.setenv(gc.TEST_STEPS_ENV, "1")
    rc = gc.main(["--out", str(tmp_path), "--dry-run", "--steps", "_fail,_hang,_ok,_gpu"])
    data = json.loads((tmp_path / "gpu_check.json").read_text())
    _check_schema(data)
    steps = {s["name"]: s for s in data["steps"]}
    assert [s["name"] for s in data["steps"]] == ["_fail", "_hang", "_ok", "_gpu"]
    assert steps["_fail"]["status"] == "failed" and "injected failure" in steps["_fail"]["reason"]
    assert "injected failure" in (tmp_path / "steps" / "_fail" / "step.log").read_text()  # the traceback is kept
    assert steps["_hang"]["status"] == "timeout" and steps["_hang"]["seconds"] < 30
    assert steps["_ok"]["status"] == "ok" and data["results"]["_ok"]["value"] == 42
    assert data["results"]["_ok"]["saw_steps"] == ["_fail", "_hang"]  # a step sees what ran before it
    assert steps["_gpu"]["status"] == "skipped" and steps["_gpu"]["reason"].startswith("dry run")
    assert data["finished"] and rc == 1  # failures make the exit status non-zero, after everything ran
    log = (tmp_path / "gpu_check.log").read_text()
    assert "_hang: timeout" in log and "_ok: ok" in log and "summary:" in log


@pytest.mark.parametrize("build_s,build_timeout,want", [(1.0, 60, "ok"), (60.0, 1, "timeout"), (None, 60, "failed")])
def test_the_build_runs_in_the_background_and_only_waiting_steps_wait(tmp_path, monkeypatch, build_s, build_timeout,
                                                                       want):  # fmt: skip
    monkeypatch.setenv(gc.TEST_STEPS_ENV, "1")
    monkeypatch.setattr(gc, "_probe_cuda", lambda: (True, "", "9.0"))  # as on a GPU machine
    code = f"import time; time.sleep({build_s or 0.5})" + ("" if build_s else "; raise SystemExit('nvcc: error')")
    monkeypatch.setattr(gc, "BUILD_COMMAND", [sys.executable, "-c", code])
    gc.main(["--out", str(tmp_path), "--steps", "build,_ok,_after_build", "--timeout", f"build={build_timeout}"])
    data = json.loads((tmp_path / "gpu_check.json").read_text())
    _check_schema(data)
    order = [s["name"] for s in data["steps"]]
    assert order == ["_ok", "build", "_after_build"]  # _ok ran meanwhile; _after_build waited for the build
    build = data["steps"][1]
    assert build["status"] == want and (want != "failed" or "nvcc: error" in build["reason"])
    assert (tmp_path / "steps" / "build.log").exists()
    assert data["steps"][2]["status"] == "ok"  # a failed or timed-out build does not stop the steps after it


def test_dry_run_skips_every_gpu_step_with_the_reason(tmp_path):
    names = [n for n in gc.all_steps(list(gc.DEFAULT_BACKENDS)) if n != "env"]  # env runs on CPU (torch import)
    rc = gc.main(["--out", str(tmp_path), "--dry-run", "--steps", ",".join(["build", *names])])
    data = json.loads((tmp_path / "gpu_check.json").read_text())
    _check_schema(data)
    assert rc == 0 and data["dry_run"] and data["dry_run_reason"] == "dry run: --dry-run"
    assert [s["name"] for s in data["steps"]] == ["build", *names]
    assert all(s["status"] == "skipped" and s["reason"] == "dry run: --dry-run" for s in data["steps"])
    assert [t["passed"] for t in data["targets"]] == [None] * 5  # nothing measured: no verdict, not a pass


def test_plan_covers_the_issue_and_waits_for_the_build_only_where_needed():
    steps = gc.plan(["csrc", "sdpa", "te", "auto", "nosuch"])
    names = [s.name for s in steps]
    for name in (
        "env",
        "gemm_peak",
        "attention_baselines",
        "kernels_vs_torch",
        "flash_attention_csrc",
        "train_1.3b_csrc",
        "train_110m_sdpa",
        "train_1.3b_te",
        "train_110m_auto",
        "train_1.3b_nosuch",
    ):
        assert name in names, name  # fmt: skip
    first_after_build = min(i for i, s in enumerate(steps) if s.after_build)
    assert all(s.after_build for s in steps[first_after_build:])  # no step waits, then an idle one runs
    assert {s.name for s in steps if s.after_build} >= {"kernels_vs_torch", "train_1.3b_csrc", "train_1.3b_auto"}
    assert not any(s.after_build for s in steps if s.name.endswith(("_sdpa", "_te", "_nosuch")))
    assert sum(s.timeout_s for s in steps[:3]) < 480


def test_unknown_kernels_choice_is_skipped_with_its_name():
    with pytest.raises(gc.Skip, match="unknown choice: model.kernels='nosuch'"):
        gc.make_train_step("110m", "nosuch")({})


def test_train_command_is_a_valid_recipe_override():
    from megatron_biomed.config.loading import load_config

    argv = gc.train_argv("1.3b", "csrc", Path("/x"), peak_tflops=790.0)
    assert argv[1].endswith("tools/pretrain.py") and argv[2:4] == ["--preset", "biomedlm-2.7b"]
    cfg = load_config("biomedlm-2.7b", overrides=[a for a in argv if "=" in a])
    assert (cfg.model.num_layers, cfg.model.hidden_size, cfg.model.kernels) == (24, 2048, "csrc")
    assert cfg.data.mock and cfg.train.precision == "bf16" and cfg.logging.peak_flops_per_rank == 790e12
    assert cfg.logging.metrics_file == "/x/metrics.jsonl"
    # ~1.3B parameters (12 h^2 per layer plus the tied embedding)
    params = cfg.model.num_layers * 12 * cfg.model.hidden_size**2 + gc.GPT_VOCAB * cfg.model.hidden_size
    assert 1.2e9 < params < 1.4e9


def test_metrics_summary_and_targets():
    lines = [{"kind": "train", "iteration": i, "tokens_per_s": 100.0 * i, "mfu": 0.1 * i, "step_time_s": 1.0,
              "tflops_per_rank": 1.0, "loss": 5.0, "max_memory_gib": 10.0 + i} for i in range(1, 7)]  # fmt: skip
    lines.append({"kind": "valid", "iteration": 6, "loss": 4.0})
    s = gc.summarize_metrics(lines, warmup=3)
    assert s["steps"] == 6 and s["steps_measured"] == 3
    assert s["tokens_per_s"] == 500.0 and s["mfu"] == pytest.approx(0.5) and s["memory"] == {"max_memory_gib": 16.0}
    with pytest.raises(RuntimeError, match="no training steps"):
        gc.summarize_metrics([{"kind": "valid"}], warmup=0)
    results = {
        "attention_baselines": {"biomedlm": {"sdpa_flash": {"fwd_tflops": 100.0, "bwd_tflops": 100.0}}},
        "flash_attention_csrc": {"biomedlm": {"csrc": {"fwd_tflops": 95.0, "bwd_tflops": 70.0}}},
        "train_1.3b_csrc": {"mfu": 0.35},
        "train_1.3b_te": {"mfu": 0.45},
        "train_1.3b_sdpa": None,  # a failed run
    }
    t = {x["name"]: x for x in gc.evaluate_targets(results)}
    assert t["flash fwd biomedlm vs SDPA-flash"]["passed"] is True
    assert t["flash bwd biomedlm vs SDPA-flash"]["passed"] is False
    assert t["flash fwd biollm vs SDPA-flash"]["passed"] is None
    assert t["1.3B GPT MFU"]["value"] == 0.45 and t["1.3B GPT MFU"]["detail"] == "te"
    assert t["1.3B GPT MFU"]["per_kernels"] == {"csrc": 0.35, "te": 0.45}


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(SystemExit, match="unknown step.*'nosuch'"):
        gc.main(["--out", str(tmp_path), "--dry-run", "--steps", "nosuch"])
    with pytest.raises(SystemExit):
        gc.main(["--out", str(tmp_path), "--dry-run", "--timeout", "env"])
