"""The library's import graph: layers, cycles, imports inside functions and private names across packages (read
from the source with ast).

The layer order is written once, here, and in ../shared/STYLE.md ("Layers and seams"). A module may import
from its own layer or a lower one, never a higher one (not inside a function either), and no set of modules
or top-level packages may import each other in a circle. Imports of the library inside functions are refused
(they are how circles hide); a third-party import inside a function (a heavy or optional package) must say why
in a comment on its line or the line above.
"""

from __future__ import annotations

import ast
import re
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "megatron_biomed"

# Lowest first; names on one line share a layer. "base" is the package's own top-level modules
# (the error base class, the registry helper) and its __init__.
LAYERS: list[tuple[str, ...]] = [
    ("base",),
    ("config",),
    ("kernels",),
    ("models",),
    ("tokenizer", "data"),
    ("parallel", "planning"),
    ("checkpoint",),
    ("training",),
    ("finetune", "eval", "convert", "inference"),
    ("tools",),
]
LAYER_OF = {name: i for i, names in enumerate(LAYERS) for name in names}


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported module of the library
    line: int
    in_function: bool


def _module_name(path: Path) -> str:
    if path.parts[len(ROOT.parts)] == "tools":
        return "tools." + path.stem
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def library_files() -> dict[str, Path]:
    files = {_module_name(p): p for p in sorted((ROOT / PACKAGE).rglob("*.py"))}
    files.update({_module_name(p): p for p in sorted((ROOT / "tools").glob("*.py"))})
    return files


def area(module: str) -> str:
    """The layer name of a module: its top-level package, "base" for the package's own modules, "tools"."""
    parts = module.split(".")
    if parts[0] == "tools":
        return "tools"
    if len(parts) == 1 or parts[1] not in {p.name for p in (ROOT / PACKAGE).iterdir() if p.is_dir()}:
        return "base"
    return parts[1]


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _known(name: str, files: dict[str, Path]) -> str | None:
    """The library module ``name`` is (a module, or the package holding a compiled extension); None outside."""
    if not (name == PACKAGE or name.startswith(PACKAGE + ".")):
        return None
    while name not in files and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


@dataclass(frozen=True)
class FunctionImport:
    module: str
    line: int
    imported: str
    reason: bool


def _says_why(line: str) -> bool:
    """Whether ``line`` has a comment with words in it besides linter directives (noqa, type:, fmt:)."""
    if "#" not in line:
        return False
    comment = re.sub(r"(noqa(:\s*[A-Z0-9, ]+)?|type:\s*ignore(\[[^\]]*\])?|fmt:\s*\w+)", "", line.split("#", 1)[1])
    return bool(re.search(r"[A-Za-z]{3,}", comment))


def scan(files: dict[str, Path]) -> tuple[list[Import], list[FunctionImport]]:
    edges: list[Import] = []
    third_party: list[FunctionImport] = []
    for module, path in files.items():
        source = path.read_text()
        lines = source.splitlines()
        tree = ast.parse(source, str(path))
        is_package = path.name == "__init__.py"
        in_function: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                in_function.update(id(n) for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom)))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(module, is_package, node)
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            else:
                continue
            inside = id(node) in in_function
            for name in names:
                target = _known(name, files)
                if target is None:
                    if inside:
                        above = lines[node.lineno - 2] if node.lineno > 1 else ""
                        reason = _says_why(lines[node.lineno - 1]) or above.strip().startswith("#") and _says_why(above)
                        third_party.append(FunctionImport(module, node.lineno, name, reason))
                    continue
                if not (path.parent / (name.rsplit(".", 1)[-1] + ".py")).exists() and target != name:
                    # a compiled extension of the package (megatron_biomed._C, _emu): optional, built at install
                    if inside:
                        third_party.append(FunctionImport(module, node.lineno, name, _says_why(lines[node.lineno - 1])))
                    continue
                if target != module:
                    edges.append(Import(module, target, node.lineno, inside))
    return edges, third_party


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(max(10000, sys.getrecursionlimit()))

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _graph() -> tuple[list[Import], list[FunctionImport]]:
    return scan(library_files())


def test_layer_order_is_written_in_style_card():
    style = ROOT.parent / "shared" / "STYLE.md"
    if not style.is_file():
        import pytest

        pytest.skip(f"{style} is not here (the shared folder sits beside the project in CI and development)")
    text = style.read_text()
    order = " < ".join(", ".join(n for n in names if n != "base") for names in LAYERS if names != ("base",))
    assert order in text, f"STYLE.md should state the layer order as: {order}"


def test_every_library_module_has_a_layer():
    unknown = sorted({area(m) for m in library_files()} - set(LAYER_OF))
    assert not unknown, f"packages with no layer in LAYERS: {unknown}"


def test_no_import_goes_up_a_layer():
    edges, _ = _graph()
    upward = [
        f"{e.source}:{e.line} imports {e.target} ({area(e.source)} is below {area(e.target)})"
        for e in edges
        if LAYER_OF[area(e.source)] < LAYER_OF[area(e.target)]
    ]
    assert not upward, "imports from a lower layer to a higher one:\n  " + "\n  ".join(upward)


def test_no_module_import_cycle():
    edges, _ = _graph()
    graph: dict[str, set[str]] = defaultdict(set)
    for e in edges:
        graph[e.source].add(e.target)
    cycles = _cycles(graph)
    assert not cycles, "modules importing each other in a circle:\n  " + "\n  ".join(" <-> ".join(c) for c in cycles)


def test_no_package_import_cycle():
    edges, _ = _graph()
    graph: dict[str, set[str]] = defaultdict(set)
    where: dict[tuple[str, str], str] = {}
    for e in edges:
        a, b = area(e.source), area(e.target)
        if a != b:
            graph[a].add(b)
            where.setdefault((a, b), f"{e.source}:{e.line}")
    cycles = _cycles(graph)
    detail = [
        " <-> ".join(c) + " (" + ", ".join(where[(a, b)] for a in c for b in c if (a, b) in where) + ")" for c in cycles
    ]
    assert not cycles, "packages importing each other in a circle:\n  " + "\n  ".join(detail)


def test_no_library_import_inside_a_function():
    edges, _ = _graph()
    inside = [f"{e.source}:{e.line} imports {e.target}" for e in edges if e.in_function]
    assert not inside, (
        "imports of the library inside functions (move them to the top of the module; a circle they dodge must "
        "be cut by moving code, not hidden):\n  " + "\n  ".join(inside)
    )


def test_third_party_imports_inside_functions_say_why():
    _, third_party = _graph()
    silent = [f"{f.module}:{f.line} imports {f.imported}" for f in third_party if not f.reason]
    assert not silent, (
        "third-party imports inside functions without a reason (a comment on the line or the line above saying "
        "what makes the package heavy or optional here); otherwise import it at the top:\n  " + "\n  ".join(silent)
    )


def _module_aliases(module: str, path: Path, tree: ast.AST, files: dict[str, Path]) -> dict[str, str]:
    """Local names bound to library modules by the imports of ``module``."""
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = _resolve(module, path.name == "__init__.py", node)
            for a in node.names:
                if f"{base}.{a.name}" in files:
                    aliases[a.asname or a.name] = f"{base}.{a.name}"
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name in files and a.asname:
                    aliases[a.asname] = a.name
    return aliases


def test_no_private_name_is_used_across_packages():
    files = library_files()
    used = []
    for module, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = _resolve(module, path.name == "__init__.py", node)
                if _known(base, files) and area(base) != area(module):
                    used += [f"{module}:{node.lineno} imports {base}.{a.name}" for a in node.names
                             if a.name.startswith("_") and not a.name.startswith("__")]  # fmt: skip
        aliases = _module_aliases(module, path, tree, files)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr.startswith("_") and not node.attr.startswith("__")
                and area(aliases[node.value.id]) != area(module)
            ):  # fmt: skip
                used.append(f"{module}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
    assert not used, "private names used from another package (give them a public name):\n  " + "\n  ".join(used)
