#!/usr/bin/env python
"""Mutation check: plant each known bug in a copy of the tree and show that the tests meant to catch it fail.

    .venv/bin/python tests/mutations/check.py                  # every plant
    .venv/bin/python tests/mutations/check.py --fast           # the CI subset (plants marked fast)
    .venv/bin/python tests/mutations/check.py NAME [NAME ...]  # chosen plants
    .venv/bin/python tests/mutations/check.py --list           # names, areas, tests
    .venv/bin/python tests/mutations/check.py --json out.json  # also write the table as JSON

Plants live in tests/mutations/plants/<area>.py (a module-level ``PLANTS`` list of ``plant.Plant``); adding one
is adding an entry there. Every run works on a copy of the tree under a temporary directory (the working tree is
never touched), with ``PYTHONPATH`` pointing at the copy so subprocesses the tests start import the copy too.

1. Baseline: the union of the chosen plants' tests runs on the unmutated copy and must pass, else the check
   stops with exit 2 (a plant "caught" by an already-red test proves nothing).
2. Each plant: its edits are applied (each old text must occur exactly once, else the plant is STALE: the code
   moved and the plant must follow) and every edited Python file must still compile (else BROKEN: a syntax
   error would fail the tests without showing that they catch the bug); its tests run, and the first failing
   test is recorded by node id.
3. A table (plant, area, caught by, seconds) is printed; exit 1 if any plant survived, is stale or broken.

The last full run's table is in tests/mutations/README.md.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

from plant import Plant  # noqa: E402  (the folder is put on sys.path first: the check runs as a script)

_FAILED = re.compile(r"^(?:FAILED|ERROR) (\S+?)(?: - (.*))?$")


def all_plants() -> list[tuple[str, Plant]]:
    """(area, plant) for every plant in tests/mutations/plants/, in module then list order."""
    found = []
    for info in sorted(pkgutil.iter_modules([str(HERE / "plants")]), key=lambda m: m.name):
        module = importlib.import_module(f"plants.{info.name}")
        found += [(info.name, p) for p in module.PLANTS]
    names = [p.name for _, p in found]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise SystemExit(f"plant names used twice: {twice}")
    return found


def copy_tree(dst: Path) -> None:
    ignore = shutil.ignore_patterns(".venv", ".git", "__pycache__", ".pytest_cache", ".ruff_cache", "*.egg-info")
    # csrc: plants in the kernels; the copy's tests build its emulator module from the copy's (planted) sources.
    for entry in ("megatron_biomed", "csrc", "tests", "tools", "examples", "pytest.ini", "pyproject.toml", "ruff.toml"):
        src = ROOT / entry
        if src.is_dir():
            shutil.copytree(src, dst / entry, ignore=ignore)
        elif src.exists():
            shutil.copy2(src, dst / entry)
    # Tests find the shared data beside the project root, as in CI.
    shared = ROOT.parent / "shared"
    if shared.exists() and not (dst.parent / "shared").exists():
        (dst.parent / "shared").symlink_to(shared)


@dataclass
class Outcome:
    status: str  # caught | SURVIVED | STALE | BROKEN | ERROR
    caught_by: str
    why: str
    seconds: float


def pytest_run(work: Path, tests: list[str], stop_at_first: bool) -> tuple[int, str, tuple[str, str]]:
    """pytest's exit code, its output, and (node id, message) of the first test that failed or errored."""
    env = dict(os.environ, PYTHONPATH=str(work), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    report = work.parent / "junit.xml"
    cmd = [sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider", "--timeout=900"]
    cmd += ["-x"] if stop_at_first else []
    cmd += [f"--junitxml={report}"]
    proc = subprocess.run([*cmd, *tests], cwd=work, env=env, capture_output=True, text=True)
    return proc.returncode, proc.stdout + proc.stderr, first_failure(report, proc.stdout)


def first_failure(report: Path, output: str) -> tuple[str, str]:
    """The first failed or errored test case in pytest's JUnit report (node ids rebuilt from file and name)."""
    if report.exists():
        for case in ElementTree.parse(report).getroot().iter("testcase"):
            bad = case.find("failure") if case.find("failure") is not None else case.find("error")
            if bad is None:
                continue
            module = case.get("classname", "").rsplit(".", 1)
            path = case.get("classname", "").replace(".", "/") + ".py"
            if len(module) == 2 and module[1][:1].isupper():  # a test class: path/to/test_x.py::Class::name
                path = module[0].replace(".", "/") + ".py::" + module[1]
            message = (bad.get("message") or "").splitlines()
            return f"{path}::{case.get('name')}", (message[0] if message else "")[:200]
    for line in output.splitlines():
        m = _FAILED.match(line.strip())
        if m:
            return m.group(1), (m.group(2) or "").strip()
    return "?", ""


def baseline(tests: list[str]) -> tuple[bool, str, float]:
    with tempfile.TemporaryDirectory(prefix="mutation-baseline-") as tmp:
        work = Path(tmp) / "tree"
        copy_tree(work)
        start = time.time()
        rc, out, _ = pytest_run(work, tests, stop_at_first=False)
        return rc == 0, out, time.time() - start


def run_plant(plant: Plant) -> Outcome:
    with tempfile.TemporaryDirectory(prefix=f"mutation-{plant.name}-") as tmp:
        work = Path(tmp) / "tree"
        copy_tree(work)
        for file, old, new in plant.edits:
            path = work / file
            text = path.read_text() if path.exists() else ""
            if text.count(old) != 1:
                return Outcome("STALE", "-", f"{file}: the text to replace occurs {text.count(old)} times", 0.0)
            path.write_text(text.replace(old, new))
        for file in {file for file, _, _ in plant.edits if file.endswith(".py")}:
            try:  # a plant that does not compile is "caught" by the SyntaxError, not by the test meant for it
                compile((work / file).read_text(), file, "exec")
            except SyntaxError as e:
                return Outcome("BROKEN", "-", f"{file} does not compile with the plant: {e}", 0.0)
        start = time.time()
        rc, out, (test, why) = pytest_run(work, plant.tests, stop_at_first=True)
        took = time.time() - start
        if rc == 1:
            return Outcome("caught", test, why, took)
        if rc == 0:
            return Outcome("SURVIVED", "-", "every test passed with the bug in place", took)
        return Outcome("ERROR", "-", f"pytest exit {rc}: {out[-1500:]}", took)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="plants to run (default: all)")
    parser.add_argument("--fast", action="store_true", help="only the plants marked fast (the CI subset)")
    parser.add_argument("--list", action="store_true", help="list the plants and exit")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated run (when just done)")
    args = parser.parse_args(argv)

    plants = all_plants()
    known = {p.name for _, p in plants}
    unknown = sorted(set(args.names) - known)
    if unknown:
        print(f"unknown plant(s) {unknown}; --list shows the known ones")
        return 2
    chosen = [(a, p) for a, p in plants if (not args.names or p.name in args.names) and (p.fast or not args.fast)]
    if args.list:
        for area, p in chosen:
            print(f"{p.name:40s} {area:12s} {'fast' if p.fast else '    '}  {' '.join(p.tests)}")
        return 0

    tests = list(dict.fromkeys(t for _, p in chosen for t in p.tests))
    if not args.no_baseline:
        green, out, took = baseline(tests)
        print(
            f"baseline: {len(tests)} test selections on the unmutated tree, {took:.0f}s: {'green' if green else 'RED'}",
            flush=True,
        )
        if not green:
            print(out[-4000:])
            return 2

    rows = []
    print(f"{'plant':40s} {'area':12s} {'result':9s} {'s':>5s}  caught by", flush=True)
    for area, p in chosen:
        o = run_plant(p)
        rows.append(
            {
                "plant": p.name,
                "area": area,
                "what": p.what,
                "status": o.status,
                "caught_by": o.caught_by,
                "why": o.why,
                "seconds": round(o.seconds, 1),
            }
        )
        print(f"{p.name:40s} {area:12s} {o.status:9s} {o.seconds:5.0f}  {o.caught_by}", flush=True)
        if o.status != "caught":
            print(f"    {o.why}", flush=True)
    bad = [r for r in rows if r["status"] != "caught"]
    print(f"\n{len(rows) - len(bad)}/{len(rows)} plants caught", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
