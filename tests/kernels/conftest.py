"""Fixtures for the kernel tests: ``emu`` is ``megatron_biomed._emu``, built first if needed.

The module is (re)built in place by ``csrc/build_emu.py`` when it is missing or older than any
source or header it was compiled from (only changed files are recompiled), so tests never run
stale kernels. Set ``MBK_EMU_NO_BUILD=1`` to import whatever is there instead.
A compile error fails the tests that use the fixture; it never skips them.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _build_emu() -> None:
    spec = importlib.util.spec_from_file_location("_mbk_build_emu", ROOT / "csrc" / "build_emu.py")
    build_emu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_emu)
    build_emu.build_inplace(ROOT, jobs=2)


@pytest.fixture(scope="session")
def emu_module():
    """The emulator module, imported once per session."""
    if os.environ.get("MBK_EMU_NO_BUILD") != "1":
        try:
            _build_emu()
        except RuntimeError as err:
            pytest.fail(str(err), pytrace=False)
    return importlib.import_module("megatron_biomed._emu")


@pytest.fixture
def emu(emu_module):
    """The emulator module; the thread schedule is back to in-order (and cp.async copies land at their wait) after
    each test."""
    emu_module.set_schedule("in_order", 0)
    yield emu_module
    emu_module.set_schedule("in_order", 0)
    if hasattr(emu_module, "set_cp_async_landing"):
        emu_module.set_cp_async_landing("at_wait")
