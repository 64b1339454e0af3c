"""Install megatron-biomed.

Python package: ``megatron_biomed``. Compiled parts, both optional at run time:

* ``megatron_biomed._emu`` -- the CPU emulator of CUDA's execution model running the csrc kernels
  (pybind11 + g++, always built; it is how the kernels are tested on machines without a GPU).
* ``megatron_biomed._C`` -- the real CUDA kernels as torch custom ops, built only when torch is a
  CUDA build and ``nvcc`` is on PATH (or MEGATRON_BIOMED_BUILD_CUDA=1); otherwise skipped with a note.

Install with ``pip install --no-build-isolation -e .`` (the CUDA build needs the installed torch).
"""

from __future__ import annotations

import sys
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "csrc"))


def _requirements(name: str) -> list[str]:
    lines = (ROOT / name).read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def _extensions():
    """Compiled extensions and the build command class (see csrc/build_extensions.py)."""
    try:
        import build_extensions  # csrc/build_extensions.py
    except ImportError:
        return [], {}
    return build_extensions.extensions(ROOT), build_extensions.cmdclass()


ext_modules, cmdclass = _extensions()

setup(
    name="megatron-biomed",
    version="0.1.0",
    description="Megatron-style model-parallel training of biomedical language models on megatron-core",
    long_description=(ROOT / "README.md").read_text() if (ROOT / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.12",
    packages=find_packages(include=["megatron_biomed", "megatron_biomed.*"]),
    package_data={"megatron_biomed": ["config/presets/*.yaml", "data/resources/*"]},
    install_requires=_requirements("requirements.txt"),
    extras_require={
        "test": _requirements("requirements-test.txt"),
        # GPU accelerators, chosen at run time behind the same Python API. apex is optional too, but
        # is built from source (see README); it is not on PyPI.
        "gpu": ["transformer-engine[pytorch]", "flash-attn"],
    },
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    zip_safe=False,
)
