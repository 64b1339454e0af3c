"""tools/install_offline.sh: the install for a GPU machine with its own torch and no package registry.

A wheel folder with one tiny local wheel (and a torch / packaging wheel the machine already has) is installed for
real into a --target folder: only --no-index, --no-deps pip calls, torch untouched, nothing the machine has is
shadowed. --check prints the project build and changes nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "install_offline.sh"


def _wheel(folder: Path, dist: str, version: str, files: dict[str, str]) -> Path:
    """A minimal valid wheel (pure Python) of our own making."""
    path = folder / f"{dist}-{version}-py3-none-any.whl"
    info = f"{dist}-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
        z.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", "")
    return path


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "PIP_CONFIG_FILE": os.devnull}  # no site-wide find-links
    env.pop("MEGATRON_BIOMED_WHEELS", None)
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=120)


def test_installs_the_folder_without_a_registry_and_leaves_torch_alone(tmp_path):
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    wheels.mkdir()
    _wheel(wheels, "mbk_offline_probe", "1.0", {"mbk_offline_probe/__init__.py": "VALUE = 21\n"})
    (wheels / "torch-99.0-cp312-cp312-manylinux_2_28_x86_64.whl").write_bytes(b"not a wheel: must never be read")
    (wheels / "packaging-99.0-py3-none-any.whl").write_bytes(b"the machine has packaging: must not be read")
    proc = _run("--wheels", str(wheels), "--target", str(target), "--no-project")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert (target / "mbk_offline_probe" / "__init__.py").read_text() == "VALUE = 21\n"
    assert not (target / "torch").exists() and not list(target.glob("packaging*"))
    assert "skip torch-99.0" in out and "skip packaging-99.0" in out
    pip_lines = [ln for ln in out.splitlines() if "pip install" in ln]
    assert pip_lines and all("--no-index" in ln and "--no-deps" in ln for ln in pip_lines)
    assert not any("torch-99" in ln for ln in pip_lines)
    assert f"1 distributions in {target}" in out  # what landed, counted from the metadata

    # --check: the project build is printed (in place, for the present GPU), nothing is created
    check_target = tmp_path / "site2"
    proc = _run("--wheels", str(wheels), "--target", str(check_target), "--check")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert not check_target.exists()
    assert "would run:" in out and "setup.py build_ext --inplace" in out and "TORCH_CUDA_ARCH_LIST" in out
    proc = _run("--wheels", str(wheels), "--into-env", "--check")
    editable = [ln for ln in proc.stdout.splitlines() if " -e " in ln]
    assert proc.returncode == 0 and editable
    assert all(f in editable[0] for f in ("--no-index", "--no-deps", "--no-build-isolation"))


def test_missing_wheel_folder_is_named(tmp_path):
    proc = _run("--wheels", str(tmp_path / "nowhere"), "--check")
    assert proc.returncode == 1 and f"--wheels {tmp_path / 'nowhere'} is not a folder" in proc.stderr
    proc = _run("--check")
    assert proc.returncode == 1 and "MEGATRON_BIOMED_WHEELS" in proc.stderr
