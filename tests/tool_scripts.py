"""Import a command-line script of tools/ as a module (tools/ holds scripts, not a package), and run
tools/pubmed_to_jsonl.py in this process the way the data tests do."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def load_tool(name: str) -> ModuleType:
    """``tools/<name>.py`` imported as the module ``name``."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_pubmed_to_jsonl(*args) -> int:
    """``tools/pubmed_to_jsonl.py ARGS --no-progress`` in this process; its exit code."""
    return load_tool("pubmed_to_jsonl").main([*map(str, args), "--no-progress"])
