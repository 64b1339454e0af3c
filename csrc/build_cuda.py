"""Build of ``megatron_biomed._C``: the csrc CUDA kernels as torch custom ops.

Imported by ``csrc/build_extensions.py`` (setup.py) and by ``tests/kernels/test_cuda_build.py``.

Layout of what gets built:

* ``csrc/cuda/*.cu`` -- torch-free launcher instantiations (one file per kernel family, split
  further where a family is slow to compile). They include only the CUDA toolkit and csrc headers,
  so they are compiled here directly with ``nvcc`` (not by torch's BuildExtension, which would add
  torch's include paths and its ``-D__CUDA_NO_HALF_OPERATORS__``-style flags). Each object is cached
  under ``build/cuda_objects/`` by a hash of its source, every csrc header, the nvcc version and the
  flags, together with the ``-Xptxas -v`` report, so ``pip install`` and the nvcc test share one
  compilation.
* ``csrc/torch/*.cpp`` -- thin torch bindings (``TORCH_LIBRARY`` schemas and CUDA kernels
  registrations), compiled by torch's BuildExtension (ninja, ``MAX_JOBS``) and linked with the
  objects above.

``build_torch_emu(root)`` builds the same bindings with the same launch files compiled by g++ against
the CPU emulator (``torch.ops.megatron_biomed_emu`` on CPU tensors): how the bindings are tested on
machines without a GPU (tests/kernels/test_cuda_build.py, test_gpt_with_kernels.py).

Whether to build: ``MEGATRON_BIOMED_BUILD_CUDA=0`` skips, ``=1`` forces; otherwise the extension is
built when torch is a CUDA build and ``nvcc`` is found. Three fixes make the build work on machines
without a GPU (see /work/shared/notes/cuda-without-a-gpu.md): CUDA_HOME is taken from the toolkit
nvcc really runs from (the ``nvcc`` on PATH may be a wrapper script), the include folder of the
``nvidia`` CUDA wheels is added when the toolkit lacks headers torch's CUDA headers need
(``cusparse.h``), and the target architectures are explicit (``-gencode``; default sm_80 and sm_90
plus compute_90 PTX, or ``TORCH_CUDA_ARCH_LIST`` when the user sets it).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import importlib.util
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ENV_SWITCH = "MEGATRON_BIOMED_BUILD_CUDA"
EXTENSION_NAME = "megatron_biomed._C"
DEFAULT_ARCHS = "8.0;9.0+PTX"
# Flags for the torch-free .cu files (kept identical between the build and the nvcc test: they are
# part of the cache key).
NVCC_FLAGS = ("-O3", "-std=c++17", "--expt-relaxed-constexpr", "-Xcompiler", "-fPIC", "-Xptxas", "-v")


def _log(msg: str) -> None:
    print(f"[megatron-biomed cuda] {msg}", file=sys.stderr, flush=True)


@dataclasses.dataclass(frozen=True)
class Toolchain:
    """A usable CUDA toolkit: the real nvcc, its root, extra include dirs and its version."""

    nvcc: str
    cuda_home: str
    include_dirs: tuple[str, ...]
    version: str  # "13.0"
    version_text: str  # full `nvcc --version` output, part of the cache key


def _toolkit_root_from_nvcc(nvcc: str) -> str | None:
    """Where nvcc actually runs from: ``nvcc --dryrun`` prints ``_HERE_=<root>/bin``.

    This sees through wrapper scripts and symlinks (CUDA_HOME auto-detection in torch stops at the
    wrapper's folder, which has no headers).
    """
    try:
        out = subprocess.run(
            [nvcc, "--dryrun", "-x", "cu", "-c", os.devnull, "-o", os.devnull],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"_HERE_=(\S+)", out.stdout + out.stderr)
    if not m:
        return None
    root = Path(m.group(1)).resolve().parent
    return str(root) if (root / "include" / "cuda_runtime.h").exists() else None


def _wheel_include_dirs(cuda_home: str) -> list[str]:
    """Include dir of the ``nvidia`` CUDA wheels when the toolkit lacks headers torch needs."""
    if (Path(cuda_home) / "include" / "cusparse.h").exists():
        return []
    spec = importlib.util.find_spec("nvidia")
    if spec is None or not spec.submodule_search_locations:
        return []
    for base in spec.submodule_search_locations:
        for sub in ("cu13", "cu12"):
            inc = Path(base) / sub / "include"
            if (inc / "cusparse.h").exists():
                return [str(inc)]
        inc = Path(base) / "cusparse" / "include"  # older per-library wheel layout
        if (inc / "cusparse.h").exists():
            return [str(inc)]
    return []


def find_toolchain() -> tuple[Toolchain | None, str]:
    """The CUDA toolchain to build with, or None and the reason there is none."""
    candidates = []
    if os.environ.get("CUDA_HOME"):
        candidates.append(str(Path(os.environ["CUDA_HOME"]) / "bin" / "nvcc"))
    if shutil.which("nvcc"):
        candidates.append(shutil.which("nvcc"))
    candidates = [c for c in candidates if os.access(c, os.X_OK)]
    if not candidates:
        return None, "nvcc was not found on PATH (nor under $CUDA_HOME/bin)"
    nvcc = candidates[0]
    root = _toolkit_root_from_nvcc(nvcc)
    if root is None:
        return None, f"could not locate the CUDA toolkit behind {nvcc} (no include/cuda_runtime.h)"
    real_nvcc = str(Path(root) / "bin" / "nvcc")
    text = subprocess.run([real_nvcc, "--version"], capture_output=True, text=True, check=False).stdout
    m = re.search(r"release (\d+\.\d+)", text)
    if not m:
        return None, f"could not read the CUDA version from `{real_nvcc} --version`"
    return Toolchain(real_nvcc, root, tuple(_wheel_include_dirs(root)), m.group(1), text), ""


def build_decision() -> tuple[bool, str]:
    """Whether setup.py should build ``megatron_biomed._C``, and why (or why not)."""
    switch = os.environ.get(ENV_SWITCH, "").strip()
    if switch == "0":
        return False, f"{ENV_SWITCH}=0"
    forced = switch == "1"
    try:
        import torch
    except ImportError:
        return False, "torch is not importable (install torch first and use --no-build-isolation)"
    if torch.version.cuda is None and not forced:
        return False, f"torch {torch.__version__} is not a CUDA build"
    tc, why = find_toolchain()
    if tc is None:
        if forced:
            raise RuntimeError(f"{ENV_SWITCH}=1 but the CUDA extension cannot be built: {why}")
        return False, why
    if torch.version.cuda is not None and tc.version.split(".")[0] != torch.version.cuda.split(".")[0]:
        msg = f"nvcc is CUDA {tc.version} but torch was built with CUDA {torch.version.cuda}"
        if forced:
            raise RuntimeError(f"{msg}: install a matching toolkit or torch ({ENV_SWITCH}=1 was set)")
        return False, msg
    return True, f"torch {torch.__version__} (CUDA {torch.version.cuda}), nvcc {tc.version} at {tc.cuda_home}"


def arch_list() -> list[str]:
    """Target architectures, e.g. ["8.0", "9.0+PTX"] (TORCH_CUDA_ARCH_LIST overrides the default)."""
    raw = os.environ.get("TORCH_CUDA_ARCH_LIST") or DEFAULT_ARCHS
    return [a for a in re.split(r"[;\s]+", raw.strip()) if a]


def gencode_flags(archs: list[str] | None = None) -> list[str]:
    """Explicit ``-gencode`` flags (a GPU-less machine cannot ask a device for its arch).

    Archs are written as in TORCH_CUDA_ARCH_LIST: "8.0", "9.0a" (arch-specific), "9.0+PTX" (also
    embed PTX, which newer GPUs JIT-compile).
    """
    flags = []
    for arch in archs or arch_list():
        m = re.fullmatch(r"(\d+)\.(\d)(a?)(\+PTX)?", arch)
        if not m:
            raise ValueError(f"bad CUDA arch {arch!r} in TORCH_CUDA_ARCH_LIST (expected e.g. 8.0, 9.0a or 9.0+PTX)")
        num = f"{m.group(1)}{m.group(2)}{m.group(3)}"
        flags.append(f"-gencode=arch=compute_{num},code=sm_{num}")
        if m.group(4):
            flags.append(f"-gencode=arch=compute_{num},code=compute_{num}")
    return flags


def csrc_include_dirs(root: Path) -> list[str]:
    return [str(root / "csrc" / "include"), str(root / "csrc")]


def cuda_sources(root: Path) -> list[Path]:
    """The launcher instantiations that go into ``_C``."""
    return sorted((root / "csrc" / "cuda").glob("*.cu"))


def binding_sources(root: Path) -> list[Path]:
    return sorted((root / "csrc" / "torch").glob("*.cpp"))


@dataclasses.dataclass
class CompileResult:
    source: Path
    obj: Path
    ptxas: str  # the -Xptxas -v report (stderr of nvcc)
    seconds: float  # compile time; 0.0 when served from the cache
    cached: bool


def dependencies(tc: Toolchain, root: Path, src: Path) -> list[Path]:
    """Every file ``src`` includes (``nvcc -M``, under a second), so the cache key follows headers."""
    cmd = [tc.nvcc, "-M", str(src), "-std=c++17", *gencode_flags()[:1]]
    for inc in csrc_include_dirs(root):
        cmd += ["-I", inc]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=root, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"nvcc -M failed on {src}:\n{proc.stderr}")
    text = proc.stdout.split(":", 1)[1] if ":" in proc.stdout else proc.stdout
    files = [t for t in text.replace("\\\n", " ").split() if t != "\\"]
    return sorted({(root / f).resolve() if not os.path.isabs(f) else Path(f) for f in files})


def nvcc_command(tc: Toolchain, root: Path, src: Path, obj: Path, archs: list[str] | None = None) -> list[str]:
    cmd = [tc.nvcc, "-c", str(src), "-o", str(obj), *NVCC_FLAGS, *gencode_flags(archs)]
    for inc in csrc_include_dirs(root):
        cmd += ["-I", inc]
    return cmd


def compile_cu(
    tc: Toolchain,
    root: Path,
    src: Path,
    *,
    archs: list[str] | None = None,
    cache_dir: Path | None = None,
) -> CompileResult:
    """Compile one torch-free ``.cu`` with nvcc, cached under ``build/cuda_objects`` by the content of
    the source and everything it includes, the nvcc version and the flags."""
    cache_dir = cache_dir or root / "build" / "cuda_objects"
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256()
    key.update(tc.version_text.encode())
    key.update(" ".join([*NVCC_FLAGS, *gencode_flags(archs), *csrc_include_dirs(root)]).encode())
    for dep in [src, *dependencies(tc, root, src)]:
        key.update(str(dep).encode())
        key.update(dep.read_bytes())
    stem = f"{src.stem}-{key.hexdigest()[:16]}"
    obj, report = cache_dir / f"{stem}.o", cache_dir / f"{stem}.ptxas.txt"
    if obj.exists() and report.exists():
        return CompileResult(src, obj, report.read_text(), 0.0, True)
    tmp = cache_dir / f"{stem}.{os.getpid()}.tmp.o"
    t0 = time.perf_counter()
    proc = subprocess.run(nvcc_command(tc, root, src, tmp, archs), capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(
            f"nvcc failed on {src.relative_to(root)} (exit {proc.returncode}):\n"
            f"{' '.join(nvcc_command(tc, root, src, tmp, archs))}\n{proc.stdout}{proc.stderr}"
        )
    report.write_text(proc.stderr)
    os.replace(tmp, obj)  # atomic: a concurrent build never sees a half-written object
    _prune(cache_dir, src.stem, keep=3)
    return CompileResult(src, obj, proc.stderr, seconds, False)


def _prune(cache_dir: Path, stem: str, keep: int) -> None:
    """Drop all but the ``keep`` newest cached objects of one source (older edits of it)."""
    objs = sorted(cache_dir.glob(f"{stem}-????????????????.o"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in objs[keep:]:
        old.unlink(missing_ok=True)
        old.with_suffix(".ptxas.txt").unlink(missing_ok=True)


def compile_all(
    tc: Toolchain, root: Path, sources: list[Path], *, jobs: int | None = None, archs: list[str] | None = None
) -> list[CompileResult]:
    """Compile ``sources`` in parallel (``MAX_JOBS`` workers by default)."""
    jobs = jobs or int(os.environ.get("MAX_JOBS") or os.cpu_count() or 1)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(compile_cu, tc, root, s, archs=archs) for s in sources]
        return [f.result() for f in futures]


# ---------------------------------------------------------------------------------------------
# -Xptxas -v report


@dataclasses.dataclass
class KernelResources:
    """ptxas' resource usage of one kernel for one architecture."""

    mangled: str
    name: str  # demangled
    arch: str  # "sm_80"
    registers: int
    stack_bytes: int
    spill_stores: int
    spill_loads: int
    shared_bytes: int


_ENTRY = re.compile(r"Compiling entry function '([^']+)' for '(sm_\d+a?)'")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers(?:.*?(\d+) bytes smem)?")


def parse_ptxas(text: str) -> list[KernelResources]:
    """Parse the ``-Xptxas -v`` output of nvcc into one record per (kernel, arch)."""
    kernels: list[KernelResources] = []
    cur: dict | None = None
    for line in text.splitlines():
        if m := _ENTRY.search(line):
            cur = {"mangled": m.group(1), "arch": m.group(2), "stack": 0, "ss": 0, "sl": 0}
        elif cur is not None and (m := _FRAME.search(line)):
            cur["stack"], cur["ss"], cur["sl"] = (int(g) for g in m.groups())
        elif cur is not None and (m := _USED.search(line)):
            kernels.append(
                KernelResources(
                    cur["mangled"],
                    cur["mangled"],
                    cur["arch"],
                    int(m.group(1)),
                    cur["stack"],
                    cur["ss"],
                    cur["sl"],
                    int(m.group(2) or 0),
                )
            )
            cur = None
    names = _demangle([k.mangled for k in kernels])
    for k, n in zip(kernels, names):
        k.name = n
    return kernels


def short_name(demangled: str) -> str:
    """``void ns::kernel<float, 64>(float const*, ...)`` -> ``ns::kernel<float, 64>``."""
    name = demangled.removeprefix("void ")
    depth = 0
    for i, ch in enumerate(name):
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif ch == "(" and depth == 0:
            return name[:i]
    return name


def _demangle(names: list[str]) -> list[str]:
    if not names or shutil.which("c++filt") is None:
        return names
    out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True, check=False).stdout
    lines = out.splitlines()
    return lines if len(lines) == len(names) else names


def format_report(results: list[CompileResult], root: Path) -> str:
    """Human-readable register / shared memory / spill table of every kernel."""
    lines = ["# ptxas -v resource usage per kernel (registers, static smem, stack, spill stores/loads)"]
    for r in results:
        lines.append(f"\n## {r.source.relative_to(root)}  ({'cached' if r.cached else f'{r.seconds:.1f} s'})")
        for k in parse_ptxas(r.ptxas):
            lines.append(
                f"{k.arch:6s} regs={k.registers:3d} smem={k.shared_bytes:6d} stack={k.stack_bytes:4d} "
                f"spill_st={k.spill_stores:4d} spill_ld={k.spill_loads:4d}  {short_name(k.name)}"
            )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# The bindings on the CPU emulator (tests without a GPU)

EMU_CXXFLAGS = ("-O2", "-fPIC", "-pthread", "-g0", "-w")


def _gxx_dependencies(cmd: list[str], root: Path) -> list[Path]:
    """Files under ``root`` that a g++ command's source includes (``-MM`` on the same flags)."""
    proc = subprocess.run([*cmd, "-MM"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"g++ -MM failed:\n{' '.join(cmd)}\n{proc.stderr[-4000:]}")
    text = proc.stdout.split(":", 1)[1].replace("\\\n", " ")
    deps = {Path(t).resolve() for t in text.split() if t != "\\"}
    return sorted(p for p in deps if p.is_relative_to(root))


def build_torch_emu(root: Path, jobs: int = 2) -> Path:
    """Build ``build/torch_emu/libmegatron_biomed_emu_ops.so``: the torch bindings (csrc/torch,
    ``-DMBK_TORCH_EMU``) with the csrc/cuda launch files compiled by g++ against the CPU emulator.

    Loaded with ``torch.ops.load_library`` it registers ``torch.ops.megatron_biomed_emu.*`` (same
    schemas as ``megatron_biomed._C``) for CPU tensors, so the bindings are tested numerically
    without a GPU. Needs g++ and torch's headers only (no CUDA). Objects are cached by content.
    """
    import sysconfig

    import torch

    root = Path(root).resolve()
    torch_dir = Path(torch.__file__).resolve().parent  # (torch.utils.cpp_extension would guess a CUDA_HOME)
    out_dir = root / "build" / "torch_emu"
    out_dir.mkdir(parents=True, exist_ok=True)
    cxx = os.environ.get("CXX", "g++")
    abi = f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}"
    base = [cxx, *EMU_CXXFLAGS, *(f"-I{d}" for d in csrc_include_dirs(root))]
    jobs_list = []  # (source, compile command without -c/-o)
    for src in cuda_sources(root):
        jobs_list.append((src, [*base, "-std=c++17", "-x", "c++", str(src)]))
    for src in sorted((root / "csrc" / "emu").glob("*.cpp")):  # the emulator's runtime
        jobs_list.append((src, [*base, "-std=c++17", str(src)]))
    torch_inc = [f"-I{torch_dir / 'include'}", f"-I{torch_dir / 'include' / 'torch' / 'csrc' / 'api' / 'include'}"]
    torch_inc.append(f"-I{sysconfig.get_paths()['include']}")
    for src in binding_sources(root):
        jobs_list.append((src, [*base, "-std=c++20", "-DMBK_TORCH_EMU", abi, *torch_inc, str(src)]))

    def compile_one(item):
        src, cmd = item
        key = hashlib.sha256(" ".join(cmd).encode() + torch.__version__.encode())
        for dep in _gxx_dependencies(cmd, root):
            key.update(dep.read_bytes())
        obj = out_dir / f"{src.parent.name}_{src.stem}-{key.hexdigest()[:16]}.o"
        if not obj.exists():
            tmp = obj.with_suffix(f".{os.getpid()}.tmp")
            proc = subprocess.run([*cmd, "-c", "-o", str(tmp)], capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise RuntimeError(f"g++ failed on {src.relative_to(root)}:\n{' '.join(cmd)}\n{proc.stderr[-6000:]}")
            os.replace(tmp, obj)
        return obj

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        objs = list(pool.map(compile_one, jobs_list))
    digest = hashlib.sha256("".join(sorted(o.name for o in objs)).encode()).hexdigest()[:16]
    lib = out_dir / f"libmegatron_biomed_emu_ops-{digest}.so"
    if not lib.exists():
        libs = [f"-L{torch_dir / 'lib'}", "-lc10", "-ltorch_cpu", "-ltorch"]
        tmp = lib.with_suffix(f".{os.getpid()}.tmp")
        cmd = [cxx, "-shared", "-pthread", "-o", str(tmp), *map(str, objs), *libs]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"linking the emulated torch ops failed:\n{' '.join(cmd)}\n{proc.stderr[-6000:]}")
        os.replace(tmp, lib)
    return lib


# ---------------------------------------------------------------------------------------------
# setuptools glue


def cuda_extensions(root: Path) -> list:
    """``[CUDAExtension("megatron_biomed._C")]`` when the CUDA build can run, else ``[]``."""
    root = Path(root)
    build, why = build_decision()
    if not build:
        _log(f"skipping {EXTENSION_NAME}: {why}")
        return []
    if not cuda_sources(root) or not binding_sources(root):
        _log(f"skipping {EXTENSION_NAME}: no sources under csrc/cuda and csrc/torch")
        return []
    tc, _ = find_toolchain()
    # torch.utils.cpp_extension reads these at import time: set them before importing it.
    os.environ["CUDA_HOME"] = tc.cuda_home
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_ARCHS)
    import torch.utils.cpp_extension as cpp_ext
    from torch.utils.cpp_extension import CUDAExtension

    cpp_ext.CUDA_HOME = tc.cuda_home  # in case it was imported (and auto-detected) before

    _log(f"building {EXTENSION_NAME}: {why}; archs {arch_list()}")
    ext = CUDAExtension(
        name=EXTENSION_NAME,
        sources=[str(p.relative_to(root)) for p in binding_sources(root)],
        include_dirs=[*csrc_include_dirs(root), *tc.include_dirs],
        extra_compile_args={"cxx": ["-O2", "-g0"], "nvcc": gencode_flags()},
    )
    # Compiled by MbkBuildExtension before the bindings, then linked in.
    ext.mbk_cuda_sources = [str(p) for p in cuda_sources(root)]
    ext.mbk_root = str(root)
    return [ext]


def cmdclass() -> dict:
    """``{"build_ext": BuildExtension}`` (ninja, ``MAX_JOBS``) when torch is importable."""
    try:
        from torch.utils.cpp_extension import BuildExtension
    except ImportError:
        return {}

    class MbkBuildExtension(BuildExtension):
        """torch's BuildExtension that first nvcc-compiles csrc/cuda/*.cu for ``_C`` (cached)."""

        def build_extension(self, ext) -> None:
            emu_root = getattr(ext, "mbk_emu_root", None)
            if emu_root is not None:  # the emulator module: csrc/build_emu.py's incremental build, shared with tests
                import build_emu  # csrc/ is on sys.path in setup.py

                built = build_emu.build_inplace(Path(emu_root), jobs=int(os.environ.get("MAX_JOBS", "2")))
                target = Path(self.get_ext_fullpath(ext.name))
                if target.resolve() != built.resolve():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(built, target)
                return
            sources = getattr(ext, "mbk_cuda_sources", None)
            if sources:
                tc, why = find_toolchain()
                if tc is None:
                    raise RuntimeError(f"cannot build {EXTENSION_NAME}: {why}")
                root = Path(ext.mbk_root)
                t0 = time.perf_counter()
                results = compile_all(tc, root, [Path(s) for s in sources])
                ext.extra_objects = [*ext.extra_objects, *(str(r.obj) for r in results)]
                report = root / "build" / "ptxas_report.txt"
                report.write_text(format_report(results, root))
                fresh = [r for r in results if not r.cached]
                _log(
                    f"nvcc: {len(fresh)} compiled, {len(results) - len(fresh)} cached, "
                    f"{time.perf_counter() - t0:.1f} s; report in {report}"
                )
            super().build_extension(ext)

    return {"build_ext": MbkBuildExtension.with_options(use_ninja=True)}


# ---------------------------------------------------------------------------------------------
# SASS evidence: what the built objects really contain (cuobjdump)
#
# ptxas -v says how many registers a kernel uses; only the SASS says whether its matrix products run on
# tensor cores. cuobjdump ships in the CUDA toolkit and as the ``nvidia-cuda-cuobjdump`` wheel
# (site-packages/nvidia/cu13/bin, requirements-test.txt), so CI finds it without a full toolkit.

# The tensor-core flash kernels (mmafwd / mmabwd): every one instantiated for __half / __nv_bfloat16 must
# show HMMA on sm_80 and sm_90 and must not use local memory (spills).
MMA_KERNEL = re.compile(r"flash_(fwd|bwd)\w*_mma_kernel")
# Named like them but with no matrix product to put on tensor cores: the backward's delta = rowsum(dO * O) is an
# elementwise product and a row reduction. It must still not spill.
NO_MATRIX_PRODUCT = re.compile(r"flash_bwd_delta_mma_kernel")
MMA_DTYPES = ("__half", "__nv_bfloat16")
MMA_ARCHS = ("sm_80", "sm_90")


def find_cuobjdump() -> str | None:
    """cuobjdump from PATH, the CUDA toolkit behind nvcc, or the ``nvidia`` CUDA wheels; None if absent."""
    found = shutil.which("cuobjdump")
    if found:
        return found
    tc, _ = find_toolchain()
    candidates = [Path(tc.cuda_home) / "bin" / "cuobjdump"] if tc else []
    spec = importlib.util.find_spec("nvidia")
    for base in (spec.submodule_search_locations or []) if spec else []:
        candidates += [Path(base) / sub / "bin" / "cuobjdump" for sub in ("cu13", "cu12")]
        candidates.append(Path(base) / "cuda_cuobjdump" / "bin" / "cuobjdump")  # older per-tool wheel layout
    return next((str(c) for c in candidates if os.access(c, os.X_OK)), None)


@dataclasses.dataclass
class KernelSass:
    """What one kernel's SASS for one architecture shows (cuobjdump)."""

    mangled: str
    name: str  # demangled
    arch: str  # "sm_80"
    hmma: int  # HMMA instructions in the SASS (tensor-core matrix products)
    instructions: int
    registers: int
    shared_bytes: int  # static shared memory (dynamic shared memory is a launch argument)
    local_bytes: int  # local memory per thread: register spills and stack arrays; 0 on a hot kernel
    stack_bytes: int
    max_threads: int | None  # __launch_bounds__ (EIATTR_MAX_THREADS), when the kernel declares it


_SASS_ARCH = re.compile(r"^\s*arch = (sm_\d+a?)\s*$")
_SASS_FUNC = re.compile(r"^\s*Function : (\S+)\s*$")
_SASS_INSTR = re.compile(r"^\s*/\*[0-9a-f]{4,}\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)")
_RES_FUNC = re.compile(r"^\s*Function (\S+):\s*$")
_RES_VALS = re.compile(r"REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)")
_ELF_INFO = re.compile(r"^\.nv\.info\.(\S+)\s*$")


def _cuobjdump(tool: str, obj: Path, flag: str) -> str:
    proc = subprocess.run([tool, flag, str(obj)], capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"`{tool} {flag} {obj}` failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return proc.stdout


def parse_sass(text: str) -> dict[tuple[str, str], tuple[int, int]]:
    """``cuobjdump --dump-sass`` -> {(mangled, arch): (HMMA count, instruction count)}."""
    out: dict[tuple[str, str], list[int]] = {}
    arch, cur = "", None
    for line in text.splitlines():
        if m := _SASS_ARCH.match(line):
            arch, cur = m.group(1), None
        elif m := _SASS_FUNC.match(line):
            cur = out.setdefault((m.group(1), arch), [0, 0])
        elif cur is not None and (m := _SASS_INSTR.match(line)):
            cur[1] += 1
            cur[0] += m.group(2).startswith("HMMA")
    return {k: (v[0], v[1]) for k, v in out.items()}


def parse_resource_usage(text: str) -> dict[tuple[str, str], tuple[int, int, int, int]]:
    """``cuobjdump --dump-resource-usage`` -> {(mangled, arch): (registers, stack, shared, local bytes)}."""
    out = {}
    arch, func = "", None
    for line in text.splitlines():
        if m := _SASS_ARCH.match(line):
            arch, func = m.group(1), None
        elif m := _RES_FUNC.match(line):
            func = m.group(1)
        elif func is not None and (m := _RES_VALS.search(line)):
            out[(func, arch)] = tuple(int(g) for g in m.groups())
            func = None
    return out


def parse_max_threads(text: str) -> dict[tuple[str, str], int]:
    """``cuobjdump --dump-elf`` -> {(mangled, arch): threads of ``__launch_bounds__``} (EIATTR_MAX_THREADS)."""
    out = {}
    arch, func, attr = "", None, False
    for line in text.splitlines():
        if m := _SASS_ARCH.match(line):
            arch, func = m.group(1), None
        elif m := _ELF_INFO.match(line):
            func, attr = m.group(1), False
        elif func is not None and "EIATTR_MAX_THREADS" in line:
            attr = True
        elif attr and "Value:" in line:
            dims = [int(v, 16) for v in line.split("Value:", 1)[1].split()]
            out[(func, arch)] = math.prod(dims)
            attr = False
    return out


def sass_facts(obj: Path, cuobjdump: str | None = None) -> list[KernelSass]:
    """Per (kernel, architecture) SASS facts of a compiled object or extension ``.so`` (cuobjdump)."""
    tool = cuobjdump or find_cuobjdump()
    if tool is None:
        raise RuntimeError("cuobjdump not found: pip install nvidia-cuda-cuobjdump (requirements-test.txt)")
    sass = parse_sass(_cuobjdump(tool, obj, "--dump-sass"))
    res = parse_resource_usage(_cuobjdump(tool, obj, "--dump-resource-usage"))
    threads = parse_max_threads(_cuobjdump(tool, obj, "--dump-elf"))
    keys = sorted(set(sass) | set(res))
    names = _demangle([k[0] for k in keys])
    facts = []
    for (mangled, arch), name in zip(keys, names):
        hmma, n = sass.get((mangled, arch), (0, 0))
        regs, stack, shared, local = res.get((mangled, arch), (0, 0, 0, 0))
        facts.append(KernelSass(mangled, name, arch, hmma, n, regs, shared, local, stack, threads.get((mangled, arch))))
    return facts


# Per-SM limits for the theoretical occupancy (CUDA C Programming Guide, "Compute capabilities" table).
@dataclasses.dataclass(frozen=True)
class SmLimits:
    max_warps: int = 64
    max_blocks: int = 32
    registers: int = 65536
    register_unit: int = 256  # registers are allocated per warp in units of 256
    max_registers_per_thread: int = 255
    shared_bytes: int = 167936  # configurable shared memory per SM
    shared_unit: int = 128
    reserved_shared_per_block: int = 1024


# cuobjdump's SHARED already counts the 1 KB per-block system reserve on sm_90 (a 2048-byte static array reads
# 3072 there, 2048 on sm_80), so the reserve is added for sm_80 only.
SM_LIMITS = {"sm_80": SmLimits(), "sm_90": SmLimits(shared_bytes=233472, reserved_shared_per_block=0)}


def occupancy(arch: str, registers: int, shared_bytes: int, threads: int) -> tuple[float, int, str]:
    """Theoretical occupancy (active warps / max warps), blocks per SM and the limiting resource."""
    lim = SM_LIMITS.get(arch.rstrip("a"))
    if lim is None:
        raise ValueError(f"no occupancy limits for {arch!r} (known: {sorted(SM_LIMITS)})")
    warps = -(-threads // 32)
    per_warp_regs = -(-max(registers, 1) * 32 // lim.register_unit) * lim.register_unit
    smem = -(-(shared_bytes + lim.reserved_shared_per_block) // lim.shared_unit) * lim.shared_unit
    limits = {
        "warps": lim.max_warps // warps,
        "blocks": lim.max_blocks,
        "registers": (lim.registers // per_warp_regs) // warps,
        "shared memory": lim.shared_bytes // smem if smem else lim.max_blocks,
    }
    limiter = min(limits, key=limits.get)
    blocks = limits[limiter]
    return blocks * warps / lim.max_warps, blocks, limiter


def mma_kernel_problems(facts: list[KernelSass], ptxas: list[KernelResources] = ()) -> list[str]:
    """Why the tensor-core flash kernels among ``facts`` fail the SASS evidence (empty list: they pass).

    Every kernel matching :data:`MMA_KERNEL` for a 16-bit type must show HMMA (unless it has no matrix product,
    :data:`NO_MATRIX_PRODUCT`) and use no local memory on every architecture it was built for, and each of sm_80
    and sm_90 must have them for both 16-bit types; ``ptxas`` (the -Xptxas -v report of the same objects) adds
    its spill counts."""
    mma = [f for f in facts if MMA_KERNEL.search(f.name) and any(t in f.name for t in MMA_DTYPES)]
    problems = [f"no kernel matching {MMA_KERNEL.pattern} for {t} on {a}" for a in MMA_ARCHS for t in MMA_DTYPES
                if not any(f.arch == a and t in f.name for f in mma)]  # fmt: skip
    for f in mma:
        if f.hmma == 0 and not NO_MATRIX_PRODUCT.search(f.name):
            problems.append(f"{f.arch} {short_name(f.name)}: no HMMA in its SASS ({f.instructions} instructions)")
        if f.local_bytes:
            problems.append(f"{f.arch} {short_name(f.name)}: {f.local_bytes} bytes of local memory (spills)")
    for k in ptxas:
        if MMA_KERNEL.search(k.name) and (k.spill_stores or k.spill_loads):
            spills = f"{k.spill_stores} bytes spill stores, {k.spill_loads} bytes spill loads"
            problems.append(f"{k.arch} {short_name(k.name)}: ptxas reports {spills}")
    return problems


def format_sass_report(
    facts: list[KernelSass], default_threads: int = 128, dynamic_shared: dict[str, int] | None = None
) -> str:
    """Table of every kernel: HMMA count, registers, shared memory, local memory and theoretical occupancy.

    Occupancy uses the kernel's ``__launch_bounds__`` when it declares one, else ``default_threads`` (marked
    ``*``), and its static shared memory plus, where given, the dynamic shared memory its launcher asks for
    (``dynamic_shared``: {regex on the kernel name: bytes}; the binary does not record it)."""
    lines = [
        "# SASS per kernel (cuobjdump): HMMA instructions, registers, static shared memory, local memory (spills),",
        f"# theoretical occupancy = active warps / 64 (threads from __launch_bounds__, else {default_threads}*;",
        "# shared memory: static, plus the launcher's dynamic shared memory where the caller gives it)",
        f"{'arch':6s} {'hmma':>5s} {'instr':>6s} {'regs':>4s} {'smem':>7s} {'local':>5s} {'thr':>5s} "
        f"{'blk/SM':>6s} {'occ':>5s}  {'limiter':13s} kernel",
    ]
    for f in sorted(facts, key=lambda f: (short_name(f.name), f.arch)):
        threads = f.max_threads or default_threads
        dyn = next((b for pat, b in (dynamic_shared or {}).items() if re.search(pat, f.name)), 0)
        occ, blocks, limiter = occupancy(f.arch, f.registers, f.shared_bytes + dyn, threads)
        thr = f"{threads}{'' if f.max_threads else '*'}"
        lines.append(
            f"{f.arch:6s} {f.hmma:5d} {f.instructions:6d} {f.registers:4d} {f.shared_bytes:7d} {f.local_bytes:5d} "
            f"{thr:>5s} {blocks:6d} {occ:5.0%}  {limiter:13s} {short_name(f.name)}"
        )
    return "\n".join(lines) + "\n"
