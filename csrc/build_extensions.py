"""Which compiled extensions setup.py builds.

Two independent parts, each in its own module so they can change separately:
``build_emu.py`` (the CPU emulator module, always) and ``build_cuda.py`` (the torch CUDA extension,
only where a CUDA toolchain is usable). Either may be absent while it is being written.
"""

from __future__ import annotations

from pathlib import Path


def extensions(root: Path) -> list:
    exts = []
    try:
        from build_emu import emu_extensions
    except ImportError:
        emu_extensions = None
    if emu_extensions is not None:
        exts += emu_extensions(root)
    try:
        from build_cuda import cuda_extensions
    except ImportError:
        cuda_extensions = None
    if cuda_extensions is not None:
        exts += cuda_extensions(root)
    return exts


def cmdclass() -> dict:
    try:
        from build_cuda import cmdclass as cuda_cmdclass
    except ImportError:
        return {}
    return cuda_cmdclass()
