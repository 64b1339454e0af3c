"""Build of ``megatron_biomed._emu``: the csrc kernels compiled with g++ against the CPU emulator.

Two ways in, one list of sources and flags:

* ``emu_extensions(root)`` gives the setuptools Extension that ``setup.py`` builds (through
  ``csrc/build_extensions.py``).
* ``python csrc/build_emu.py --inplace`` (or ``build_inplace()``, which tests call through
  ``tests/kernels/conftest.py``) compiles each source to ``build/emu/*.o`` -- recompiling only what
  changed, following g++'s dependency files -- and links ``megatron_biomed/_emu<EXT_SUFFIX>``.
  A file lock makes concurrent builds (several engineers, several pytest runs) wait for each other,
  and the module is replaced atomically.

Sources: ``csrc/emu/*.cpp`` (the emulator) and ``csrc/emu_bindings/*.cpp`` (one pybind11 file per
kernel family, each defining ``register_<family>(pybind11::module_&)``; ``module.cpp`` calls them).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shlex
import subprocess
import sys
import sysconfig
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULE = "megatron_biomed._emu"
CXXFLAGS = ["-O2", "-std=c++17", "-pthread", "-fPIC", "-g0", "-fvisibility=hidden", "-Wall"]
LDFLAGS = ["-pthread"]


def _sources(root: Path) -> list[Path]:
    return sorted((root / "csrc" / "emu").glob("*.cpp")) + sorted((root / "csrc" / "emu_bindings").glob("*.cpp"))


def _include_dirs(root: Path) -> list[str]:
    import pybind11

    return [
        str(root / "csrc" / "include"),
        str(root / "csrc"),
        pybind11.get_include(),
        sysconfig.get_paths()["include"],
    ]


def emu_extensions(root: Path) -> list:
    """The setuptools Extension for ``megatron_biomed._emu`` (paths relative to ``root``)."""
    from setuptools import Extension

    root = Path(root)
    ext = Extension(
        MODULE,
        sources=[str(p.relative_to(root)) for p in _sources(root)],
        include_dirs=_include_dirs(root),
        extra_compile_args=CXXFLAGS,
        extra_link_args=LDFLAGS,
        language="c++",
    )
    # The project's build_ext (csrc/build_cuda.py cmdclass) builds it with build_inplace instead, so setup.py and the
    # tests share one set of objects under build/emu (a plain setuptools build_ext ignores this attribute).
    ext.mbk_emu_root = str(root)
    return [ext]


def module_path(root: Path = ROOT) -> Path:
    return Path(root) / "megatron_biomed" / ("_emu" + sysconfig.get_config_var("EXT_SUFFIX"))


def _deps_newer_than(dep_file: Path, stamp: float) -> bool:
    """True if any file named in a g++ ``-MMD`` dependency file is newer than ``stamp`` (or gone)."""
    if not dep_file.exists():
        return True
    text = dep_file.read_text().replace("\\\n", " ")
    _, _, deps = text.partition(":")
    for dep in deps.split():
        try:
            if os.stat(dep).st_mtime > stamp:
                return True
        except FileNotFoundError:
            return True
    return False


def _compile(src: Path, obj: Path, cxx: str, includes: list[str]) -> tuple[Path, str | None]:
    obj.parent.mkdir(parents=True, exist_ok=True)
    tmp = obj.with_suffix(".o.tmp")
    cmd = [
        cxx,
        *CXXFLAGS,
        *[f"-I{d}" for d in includes],
        "-MMD",
        "-MF",
        str(obj.with_suffix(".d")),
        "-c",
        str(src),
        "-o",
        str(tmp),
    ]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        return obj, f"$ {shlex.join(cmd)}\n{proc.stderr}"
    os.replace(tmp, obj)
    return obj, None


def build_inplace(root: Path = ROOT, jobs: int = 2, verbose: bool = False) -> Path:
    """Compile what changed and link ``megatron_biomed/_emu*.so``; returns the module's path.

    Raises RuntimeError with the compiler's output if a source does not compile.
    """
    root = Path(root)
    build_dir = root / "build" / "emu"
    build_dir.mkdir(parents=True, exist_ok=True)
    cxx = os.environ.get("CXX", "g++")
    includes = _include_dirs(root)
    out = module_path(root)
    with open(build_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        todo, objs = [], []
        for src in _sources(root):
            obj = build_dir / (src.parent.name + "__" + src.stem + ".o")
            objs.append(obj)
            if not obj.exists() or _deps_newer_than(obj.with_suffix(".d"), obj.stat().st_mtime):
                todo.append((src, obj))
        errors = []
        if todo:
            with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
                for obj, err in pool.map(lambda t: _compile(t[0], t[1], cxx, includes), todo):
                    if verbose:
                        print(f"compiled {obj.name}" if err is None else f"FAILED {obj.name}", file=sys.stderr)
                    if err is not None:
                        errors.append(err)
        if errors:
            raise RuntimeError("building megatron_biomed._emu failed:\n" + "\n".join(errors))
        # Relink unless the module on disk is exactly the one this builder last linked from these
        # objects (another build, e.g. setup.py's, may have replaced it with an older one).
        stale_link = bool(todo) or _link_stamp(out, objs) != _read_stamp(build_dir)
        if stale_link:
            tmp = out.with_name(out.name + ".tmp")
            cmd = [cxx, "-shared", *LDFLAGS, *map(str, objs), "-o", str(tmp)]
            proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"linking megatron_biomed._emu failed:\n$ {shlex.join(cmd)}\n{proc.stderr}")
            os.replace(tmp, out)
            (build_dir / "linked.txt").write_text(_link_stamp(out, objs))
            if verbose:
                print(f"linked {out}", file=sys.stderr)
    return out


def _link_stamp(out: Path, objs: list[Path]) -> str:
    """Identity of a link: the module's size and mtime, and each object's name and mtime."""
    if not out.exists():
        return ""
    st = out.stat()
    lines = [f"{out.name} {st.st_size} {st.st_mtime_ns}"]
    lines += [f"{o.name} {o.stat().st_mtime_ns}" for o in objs if o.exists()]
    return "\n".join(lines)


def _read_stamp(build_dir: Path) -> str:
    stamp = build_dir / "linked.txt"
    return stamp.read_text() if stamp.exists() else "<none>"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inplace", action="store_true", help="build megatron_biomed/_emu*.so in the source tree")
    parser.add_argument("-j", "--jobs", type=int, default=2, help="parallel compiles (default 2)")
    args = parser.parse_args(argv)
    if not args.inplace:
        parser.error("only --inplace is supported here; setup.py builds the installed module")
    print(build_inplace(jobs=args.jobs, verbose=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
