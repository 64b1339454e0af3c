"""The CI subset of the mutation check: the plants marked fast are planted and caught (tests/mutations/check.py),
and the check itself tells a surviving, a stale and a broken (not compiling) plant from a caught one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import check  # noqa: E402  (tests/mutations is not a package: the check runs as a script)
from plant import Plant  # noqa: E402

FUTURE = "from __future__ import annotations\n"
QUICK_TEST = "tests/test_import_layers.py::test_no_import_goes_up_a_layer"


def test_fast_plants_are_all_caught():
    fast = [p.name for _, p in check.all_plants() if p.fast]
    assert len(fast) >= 5, f"the CI subset has {len(fast)} plants"
    proc = subprocess.run(
        [sys.executable, str(HERE / "check.py"), "--fast"], capture_output=True, text=True, timeout=1200
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert f"{len(fast)}/{len(fast)} plants caught" in proc.stdout


def test_a_harmless_edit_survives_a_moved_text_is_stale_and_a_syntax_error_is_broken():
    errors = "megatron_biomed/errors.py"
    harmless = Plant("harmless", "a comment added", [(errors, FUTURE, FUTURE + "# a comment\n")], [QUICK_TEST])
    assert check.run_plant(harmless).status == "SURVIVED"
    stale = Plant("stale", "text that is not there", [(errors, "no such text", "")], [QUICK_TEST])
    outcome = check.run_plant(stale)
    assert outcome.status == "STALE" and "occurs 0 times" in outcome.why
    broken = Plant("broken", "a syntax error", [(errors, FUTURE, FUTURE + "if True:\n")], [QUICK_TEST])
    outcome = check.run_plant(broken)
    assert outcome.status == "BROKEN" and "does not compile" in outcome.why
