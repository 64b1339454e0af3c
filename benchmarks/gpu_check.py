#!/usr/bin/env python
"""The GPU check: one command, under 8 minutes on one H100/H200, that says how fast and how right we are there.

    bash benchmarks/gpu_check.sh                      # results in $OUT (or runs/gpu_check)
    python benchmarks/gpu_check.py --out DIR [--backends csrc,sdpa,te,auto] [--steps a,b] [--dry-run]

Steps, in order (each in its own subprocess under its own timeout; a failed or timed-out step is recorded and
the next one runs; the whole check stops starting steps when ``--budget-s`` is spent):

* ``build`` (started first, in the background): the CUDA extension for the present GPU's arch only;
* ``env``: torch / CUDA / GPU / driver / nvcc / Transformer Engine / flash-attn / megatron-core;
* ``gemm_peak``: bf16 8192^3 matmul TFLOP/s, the peak the MFU figures are measured against;
* ``attention_baselines``: PyTorch SDPA (flash and cuDNN backends) and Transformer Engine attention,
  forward and backward TFLOP/s at the BioMedLM (20 x 128, seq 1024) and BioLLM (64 heads, 8 KV groups,
  x 128, seq 4096) shapes, causal;
* ``train_<size>_<kernels>``: a ~110M and a ~1.3B GPT (tools/pretrain.py, BioMedLM's family, bf16, mock data)
  for a few dozen steps per ``model.kernels`` choice: tokens/s, MFU and peak memory from the project's metrics
  file (training/metrics.py); an unknown or unavailable choice is recorded as skipped with the reason;
* after the build: ``kernels_vs_torch`` (our norms, softmax, flash forward + backward with GQA, ragged
  lengths and dropout against float64 references, fp32 and bf16) and ``flash_attention_csrc`` (our flash
  TFLOP/s at the same shapes), then the training runs that use our kernels.

This file is the runner (the plan, timeouts, workers, the report, the targets); the steps live beside it in
gpu_check_kernels.py (env, GEMM peak, attention timings, our kernels against references) and
gpu_check_training.py (the GPT runs).

Output: ``DIR/gpu_check.json`` (rewritten after every step; schema :data:`SCHEMA`), ``DIR/gpu_check.log`` and one
log per step under ``DIR/steps/``. Targets (flash forward >= 0.9x SDPA-flash, backward >= 0.8x, the 1.3B GPT
>= 40% MFU) are written into the JSON with pass/fail. Without CUDA (or with ``--dry-run``) the plumbing runs
and every GPU step is recorded as skipped with the reason.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the step modules beside this script
from gpu_check_common import ROOT, Skip, StepFailed  # noqa: E402
from gpu_check_kernels import (  # noqa: E402
    ATTENTION_SHAPES,
    step_attention_baselines,
    step_env,
    step_flash_attention_csrc,
    step_gemm_peak,
    step_kernels_vs_torch,
)

# The training step's pieces are re-exported: the tests (and anyone scripting the check) read them from here.
from gpu_check_training import GPT_SIZES, GPT_VOCAB, make_train_step, summarize_metrics, train_argv  # noqa: E402,F401

SCHEMA = "megatron-biomed/gpu_check/1"
STATUSES = ("ok", "failed", "timeout", "skipped")
DEFAULT_BACKENDS = ("csrc", "sdpa", "te", "auto")
BUILD_BACKENDS = ("csrc", "auto")  # choices that use our kernels when built: their runs wait for the build
TEST_STEPS_ENV = "MEGATRON_BIOMED_GPU_CHECK_TEST_STEPS"  # "1" registers the test-only steps (_ok, _fail, _hang)

# Targets of issue 21 (the JSON records value, threshold and pass/fail for each).
FLASH_FWD_VS_SDPA = 0.9
FLASH_BWD_VS_SDPA = 0.8
GPT_1_3B_MFU = 0.40


# ---------------------------------------------------------------------------------------------
# steps


@dataclasses.dataclass(frozen=True)
class Step:
    name: str
    fn: Callable[[dict], dict]  # context (the JSON so far + options) -> result
    timeout_s: float
    gpu: bool = True  # needs CUDA (skipped in a dry run)
    after_build: bool = False  # waits for the background build first


# --- the background build ----------------------------------------------------------------------------------


def build_env(capability: str) -> dict:
    """Environment of ``setup.py build_ext --inplace`` for one arch only (TORCH_CUDA_ARCH_LIST = capability)."""
    return {
        **os.environ,
        "MEGATRON_BIOMED_BUILD_CUDA": "1",
        "TORCH_CUDA_ARCH_LIST": capability,
        # leave two cores to the steps that run meanwhile
        "MAX_JOBS": os.environ.get("MAX_JOBS") or str(max(1, (os.cpu_count() or 4) - 2)),
    }


BUILD_COMMAND = [sys.executable, "setup.py", "build_ext", "--inplace"]


# --- test-only steps (registered with MEGATRON_BIOMED_GPU_CHECK_TEST_STEPS=1) -------------------------------


def _test_ok(ctx: dict) -> dict:
    return {"value": 42, "saw_steps": sorted(ctx.get("results", {}))}


def _test_fail(ctx: dict) -> dict:
    raise RuntimeError("injected failure")


def _test_hang(ctx: dict) -> dict:
    time.sleep(3600)
    return {}


# ---------------------------------------------------------------------------------------------
# the plan


def plan(backends: list[str]) -> list[Step]:
    """The steps in the order they run (the build runs in the background from the start)."""
    steps = [
        Step("env", step_env, 90, gpu=False),
        Step("gemm_peak", step_gemm_peak, 90),
        Step("attention_baselines", step_attention_baselines, 150),
    ]
    no_build = [k for k in backends if k not in BUILD_BACKENDS]
    with_build = [k for k in backends if k in BUILD_BACKENDS]
    # Runs that do not use our kernels go while the build compiles; the 1.3B target first.
    for size in ("1.3b", "110m"):
        steps += [Step(f"train_{size}_{k}", make_train_step(size, k), 150 if size == "1.3b" else 100) for k in no_build]
    steps += [
        Step("kernels_vs_torch", step_kernels_vs_torch, 120, after_build=True),
        Step("flash_attention_csrc", step_flash_attention_csrc, 120, after_build=True),
    ]
    for size in ("1.3b", "110m"):
        steps += [Step(f"train_{size}_{k}", make_train_step(size, k), 150 if size == "1.3b" else 100,
                       after_build=True) for k in with_build]  # fmt: skip
    return steps


def selftest_steps() -> list[Step]:
    return [
        Step("_ok", _test_ok, 30, gpu=False),
        Step("_fail", _test_fail, 30, gpu=False),
        Step("_hang", _test_hang, 2, gpu=False),
        Step("_gpu", _test_ok, 30, gpu=True),
        Step("_after_build", _test_ok, 30, gpu=False, after_build=True),
    ]


def all_steps(backends: list[str]) -> dict[str, Step]:
    steps = plan(backends)
    if os.environ.get(TEST_STEPS_ENV) == "1":
        steps += selftest_steps()
    return {s.name: s for s in steps}


# ---------------------------------------------------------------------------------------------
# targets


def evaluate_targets(results: dict) -> list[dict]:
    """Issue 21's targets against what was measured; ``passed`` is None when a figure is missing."""
    targets = []
    ours = results.get("flash_attention_csrc") or {}
    base = results.get("attention_baselines") or {}
    for shape in ATTENTION_SHAPES:
        for direction, threshold in (("fwd", FLASH_FWD_VS_SDPA), ("bwd", FLASH_BWD_VS_SDPA)):
            a = (ours.get(shape) or {}).get("csrc", {}).get(f"{direction}_tflops")
            b = (base.get(shape) or {}).get("sdpa_flash", {}).get(f"{direction}_tflops")
            value = a / b if a and b else None
            targets.append({
                "name": f"flash {direction} {shape} vs SDPA-flash",
                "metric": f"csrc {direction} TFLOP/s / sdpa_flash {direction} TFLOP/s",
                "value": value, "threshold": threshold,
                "passed": None if value is None else value >= threshold,
                "detail": None if value is not None else "missing: csrc or sdpa_flash figure not measured",
            })  # fmt: skip
    runs = {k: v for k, v in results.items() if k.startswith("train_1.3b_") and v and v.get("mfu") is not None}
    best = max(runs, key=lambda k: runs[k]["mfu"], default=None)
    value = runs[best]["mfu"] if best else None
    targets.append({
        "name": "1.3B GPT MFU", "metric": "best model.kernels choice: model TFLOP/s / measured bf16 GEMM peak",
        "value": value, "threshold": GPT_1_3B_MFU, "passed": None if value is None else value >= GPT_1_3B_MFU,
        "detail": best.removeprefix("train_1.3b_") if best else "missing: no 1.3B run measured",
        "per_kernels": {k.removeprefix("train_1.3b_"): v["mfu"] for k, v in runs.items()},
    })  # fmt: skip
    return targets


# ---------------------------------------------------------------------------------------------
# the driver (parent process)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class Report:
    """The JSON and the log, rewritten / appended as each step ends."""

    def __init__(self, out: Path, meta: dict):
        self.out = out
        self.json_path, self.log_path = out / "gpu_check.json", out / "gpu_check.log"
        self.data = {"schema": SCHEMA, "started": _now(), "finished": None, "host": socket.gethostname(), **meta,
                     "steps": [], "results": {}, "targets": []}  # fmt: skip
        self.log_path.write_text("")
        self.save()

    def log(self, msg: str) -> None:
        line = f"[gpu_check {time.strftime('%H:%M:%S')}] {msg}"
        print(line, flush=True)
        with self.log_path.open("a") as f:
            f.write(line + "\n")

    def record(self, name: str, status: str, seconds: float, timeout_s: float | None, reason: str | None,
               result: dict | None, log: str | None) -> None:  # fmt: skip
        assert status in STATUSES
        self.data["steps"].append({"name": name, "status": status, "seconds": round(seconds, 2),
                                   "timeout_s": timeout_s, "reason": reason, "log": log})  # fmt: skip
        self.data["results"][name] = result
        self.log(f"{name}: {status} in {seconds:.1f} s" + (f" ({reason.splitlines()[0][:300]})" if reason else ""))
        self.save()

    def save(self) -> None:
        tmp = self.json_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=str))
        os.replace(tmp, self.json_path)


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _run_worker(step: Step, out: Path, timeout_s: float, backends: list[str]) -> tuple[str, str | None, dict | None]:
    """Run one step in its own process group under ``timeout_s``: (status, reason, result)."""
    step_dir = out / "steps" / step.name
    step_dir.mkdir(parents=True, exist_ok=True)
    result_path = step_dir / "result.json"
    result_path.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", step.name, "--out", str(out),
           "--backends", ",".join(backends)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with (step_dir / "step.log").open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env, start_new_session=True)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill(proc)
            return "timeout", f"killed after {timeout_s:.0f} s (its timeout)", None
    if not result_path.exists():
        tail = (step_dir / "step.log").read_text()[-2000:]
        return "failed", f"the step's process exited {proc.returncode} without a result:\n{tail}", None
    rec = json.loads(result_path.read_text())
    return rec["status"], rec.get("reason"), rec.get("result")


def _worker(name: str, out: Path, backends: list[str]) -> int:
    """Inside the step's process: run it and write ``steps/<name>/result.json``."""
    step = all_steps(backends)[name]
    step_dir = out / "steps" / name
    ctx = json.loads((out / "gpu_check.json").read_text())
    ctx["step_dir"] = str(step_dir)
    status, reason, result = "ok", None, None
    try:
        result = step.fn(ctx)
    except Skip as e:
        status, reason = "skipped", str(e)
    except StepFailed as e:
        status, reason, result = "failed", str(e), e.result
    except Exception as e:  # noqa: BLE001 -- any error of a step is its result; the check goes on
        import traceback

        traceback.print_exc()
        status, reason = "failed", f"{type(e).__name__}: {e}"
    (step_dir / "result.json").write_text(json.dumps({"status": status, "reason": reason, "result": result},
                                                     default=str))  # fmt: skip
    return 0


def _probe_cuda() -> tuple[bool, str, str]:
    """Whether CUDA is usable (else why not) and the device's capability ("9.0"), asked in a subprocess: a
    broken driver must not take the check down, and the driver itself never imports torch."""
    code = (
        "import torch; ok = torch.cuda.is_available(); "
        "cap = '%d.%d' % torch.cuda.get_device_capability(0) if ok else '-'; "
        "print(ok, torch.__version__, torch.version.cuda, cap)"
    )
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    except subprocess.TimeoutExpired:
        return False, "importing torch took over 120 s", ""
    if proc.returncode != 0:
        return False, f"torch is not importable: {proc.stderr.strip().splitlines()[-1:]}", ""
    ok, version, cuda, capability = proc.stdout.split()[-4:]
    if ok != "True":
        return False, f"no CUDA device (torch {version}, CUDA build {cuda})", ""
    return True, "", capability


def run_check(args: argparse.Namespace) -> int:
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    backends = [b for b in args.backends.split(",") if b]
    steps = all_steps(backends)
    selected = [s.strip() for s in (args.steps or "").split(",") if s.strip()]
    unknown = [s for s in selected if s not in steps and s != "build"]
    if unknown:
        raise SystemExit(f"--steps: unknown step(s) {unknown}; known: {['build', *steps]}")
    order = [steps[s] for s in selected if s != "build"] if selected else [s for s in steps.values()
                                                                           if not s.name.startswith("_")]  # fmt: skip
    want_build = (not selected or "build" in selected) and not args.no_build
    cuda_ok, why, capability = (False, "--dry-run", "") if args.dry_run else _probe_cuda()
    dry_reason = None if cuda_ok else f"dry run: {why}"
    overrides = dict(kv.split("=", 1) for kv in args.timeout)
    report = Report(out, {"dry_run": not cuda_ok, "dry_run_reason": dry_reason, "budget_s": args.budget_s,
                          "backends": backends, "argv": sys.argv[1:]})  # fmt: skip
    t_start = time.perf_counter()
    report.log(f"results in {report.json_path}; {len(order)} steps; budget {args.budget_s:.0f} s"
               + (f"; {dry_reason}" if dry_reason else ""))  # fmt: skip

    build = None  # (Popen, t0, log path)
    build_timeout = float(overrides.get("build", args.build_timeout_s))
    if want_build and not cuda_ok:
        report.record("build", "skipped", 0.0, build_timeout, dry_reason, None, None)
    elif want_build:
        cmd, env = BUILD_COMMAND, build_env(capability)
        log_path = out / "steps" / "build.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = log_path.open("w")
        report.log(f"build: started in the background (TORCH_CUDA_ARCH_LIST={env.get('TORCH_CUDA_ARCH_LIST')})")
        build = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env,
                                  start_new_session=True), time.perf_counter(), log_path)  # fmt: skip

    def finish_build(wait: bool) -> None:
        nonlocal build
        if build is None:
            return
        proc, t0, log_path = build
        left = build_timeout - (time.perf_counter() - t0)
        try:
            proc.wait(timeout=max(left, 0) if wait else 0)
        except subprocess.TimeoutExpired:
            if not wait:
                return
            _kill(proc)
            report.record("build", "timeout", time.perf_counter() - t0, build_timeout,
                          f"killed after {build_timeout:.0f} s", None, str(log_path))  # fmt: skip
            build = None
            return
        ok = proc.returncode == 0
        tail = log_path.read_text()[-2000:]
        report.record("build", "ok" if ok else "failed", time.perf_counter() - t0, build_timeout,
                      None if ok else f"setup.py build_ext exited {proc.returncode}:\n{tail}",
                      {"log_tail": tail[-600:]}, str(log_path))  # fmt: skip
        build = None

    for step in order:
        finish_build(wait=False)  # record it as soon as it is done
        if step.gpu and not cuda_ok:
            report.record(step.name, "skipped", 0.0, step.timeout_s, dry_reason, None, None)
            continue
        if step.after_build:
            finish_build(wait=True)
        left = args.budget_s - (time.perf_counter() - t_start)
        if left < 10:
            report.record(step.name, "skipped", 0.0, step.timeout_s,
                          f"out of the check's time budget (--budget-s {args.budget_s:.0f})", None, None)  # fmt: skip
            continue
        timeout_s = min(float(overrides.get(step.name, step.timeout_s)), left)
        report.log(f"{step.name}: running (timeout {timeout_s:.0f} s)")
        t0 = time.perf_counter()
        status, reason, result = _run_worker(step, out, timeout_s, backends)
        report.record(step.name, status, time.perf_counter() - t0, timeout_s, reason, result,
                      str(out / "steps" / step.name / "step.log"))  # fmt: skip
    finish_build(wait=True)
    report.data["targets"] = evaluate_targets(report.data["results"])
    report.data["finished"] = _now()
    report.data["elapsed_s"] = round(time.perf_counter() - t_start, 1)
    report.save()
    report.log(format_summary(report.data))
    return 1 if any(s["status"] in ("failed", "timeout") for s in report.data["steps"]) else 0


def format_summary(data: dict) -> str:
    lines = ["summary:", f"{'step':34s} {'status':8s} {'seconds':>8s}  note"]
    for s in data["steps"]:
        note = (s["reason"] or "").splitlines()[0][:90] if s["reason"] else ""
        lines.append(f"{s['name']:34s} {s['status']:8s} {s['seconds']:8.1f}  {note}")
    for shape in ATTENTION_SHAPES:
        row = {**((data["results"].get("attention_baselines") or {}).get(shape) or {}),
               **((data["results"].get("flash_attention_csrc") or {}).get(shape) or {})}  # fmt: skip
        for impl in ("csrc", "sdpa_flash", "sdpa_cudnn", "te"):
            r = row.get(impl)
            if r and "fwd_tflops" in r:
                lines.append(f"attention {shape:9s} {impl:10s} fwd {r['fwd_tflops']:7.1f} TFLOP/s  "
                             f"bwd {r['bwd_tflops']:7.1f} TFLOP/s")  # fmt: skip
    for name, r in data["results"].items():
        if name.startswith("train_") and r:
            mfu = f"{100 * r['mfu']:.1f}%" if r.get("mfu") is not None else "n/a"
            mem = r.get("peak_memory_gib_nvidia_smi")
            lines.append(f"{name:24s} tokens/s {r['tokens_per_s'] or 0:10.0f}  MFU {mfu:>6s}  peak mem {mem} GiB")
    for t in data["targets"]:
        verdict = {True: "PASS", False: "FAIL", None: "n/a"}[t["passed"]]
        value = "n/a" if t["value"] is None else f"{t['value']:.3f}"
        lines.append(f"target {t['name']:42s} {value:>7s} >= {t['threshold']:<5} {verdict}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / "runs" / "gpu_check"),
                    help="results folder (default $OUT, else runs/gpu_check)")  # fmt: skip
    ap.add_argument("--backends", default=",".join(DEFAULT_BACKENDS),
                    help="model.kernels choices of the training runs (comma list; unknown: skipped)")  # fmt: skip
    ap.add_argument("--steps", default=None, help="only these steps, in this order (comma list; 'build' included)")
    ap.add_argument("--dry-run", action="store_true", help="run the plumbing only: every GPU step is skipped")
    ap.add_argument("--no-build", action="store_true", help="do not build the CUDA extension (use the installed one)")
    ap.add_argument("--budget-s", type=float, default=450.0, help="start no step after this many seconds")
    ap.add_argument("--build-timeout-s", type=float, default=330.0)
    ap.add_argument("--timeout", action="append", default=[], metavar="STEP=SECONDS", help="override a step's timeout")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    for kv in args.timeout:
        if "=" not in kv:
            ap.error(f"--timeout {kv!r}: expected STEP=SECONDS")
    if args.worker:
        return _worker(args.worker, Path(args.out).resolve(), [b for b in args.backends.split(",") if b])
    return run_check(args)


if __name__ == "__main__":
    sys.exit(main())
