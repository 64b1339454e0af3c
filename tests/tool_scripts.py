"""Import a command-line script of tools/ as a module (tools/ holds scripts, not a package), and run
tools/pubmed_to_jsonl.py in this process the way the data tests do."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def load_script(path: Path, name: str) -> ModuleType:
    """The script at ``path`` imported as the module ``name`` (registered in sys.modules: dataclasses look their
    module up there)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_tool(name: str) -> ModuleType:
    """``tools/<name>.py`` imported as the module ``name``."""
    return load_script(ROOT / "tools" / f"{name}.py", name)


def run_pubmed_to_jsonl(*args) -> int:
    """``tools/pubmed_to_jsonl.py ARGS --no-progress`` in this process; its exit code."""
    return load_tool("pubmed_to_jsonl").main([*map(str, args), "--no-progress"])
