"""The restricted unpicklers (checkpoint/safe_load.py): what they admit, written out here, and a list of gadget
globals refused in every place a load unpickles (``.metadata``, a non-tensor item such as the common state, a
legacy ``common.pt``) before anything runs.

Each crafted pickle is written opcode by opcode: GLOBAL ``module name``, the arguments, REDUCE (call). Where the
call would leave a trace (a file or directory named ``marker``) its absence is checked too. The items are put
into a real checkpoint of the tiny preset (the session's initial weights): the common-state item is replaced by
a torch.save archive carrying the crafted pickle, and the manifest is rewritten to match (what an attacker
would ship). A harmless replacement item goes through the same surgery and loads, so a refusal is the
unpickler's, not a broken file's.
"""

from __future__ import annotations

import dataclasses
import io
import pickle
import re
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
from torch.distributed.checkpoint import FileSystemReader

from megatron_biomed.checkpoint import load_checkpoint, manifest, safe_load, verify_checkpoint
from megatron_biomed.checkpoint.safe_load import UnsafeCheckpointError

_DCP_MD = "torch.distributed.checkpoint.metadata"
_DCP_PLANNER = "torch.distributed.checkpoint.planner"
# Everything .metadata may name (besides torch's dtypes and layouts, below): DCP's metadata classes.
METADATA_ADMITTED = {
    (_DCP_MD, "Metadata"),
    (_DCP_MD, "MetadataIndex"),
    (_DCP_MD, "StorageMeta"),
    (_DCP_MD, "TensorStorageMetadata"),
    (_DCP_MD, "BytesStorageMetadata"),
    (_DCP_MD, "ChunkStorageMetadata"),
    (_DCP_MD, "TensorProperties"),
    (_DCP_MD, "_MEM_FORMAT_ENCODING"),
    (_DCP_PLANNER, "SavePlan"),
    (_DCP_PLANNER, "WriteItem"),
    (_DCP_PLANNER, "WriteItemType"),
    (_DCP_PLANNER, "TensorWriteData"),
    ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
    ("torch.distributed.checkpoint.filesystem", "_StoragePrefix"),
    ("torch", "Size"),
    ("torch.serialization", "_get_layout"),
    ("collections", "OrderedDict"),
}
# torch 2.14's dtypes and layouts, by every name torch gives them (aliases included).
TORCH_DTYPES_AND_LAYOUTS = """
    _mkldnn bcomplex32 bfloat16 bit bits16 bits1x8 bits2x4 bits4x2 bits8 bool cdouble cfloat chalf complex128
    complex32 complex64 double float float16 float32 float4_e2m1fn_x2 float64 float8_e4m3fn float8_e4m3fnuz
    float8_e5m2 float8_e5m2fnuz float8_e8m0fnu half int int1 int16 int2 int3 int32 int4 int5 int6 int64 int7
    int8 jagged long qint32 qint8 quint2x4 quint4x2 quint8 short sparse_bsc sparse_bsr sparse_coo sparse_csc
    sparse_csr strided uint1 uint16 uint2 uint3 uint32 uint4 uint5 uint6 uint64 uint7 uint8
""".split()
# Everything a non-tensor item may name: a tensor (its rebuild function and typed storage) in an OrderedDict.
OBJECT_ADMITTED = {("collections", "OrderedDict"), ("torch._utils", "_rebuild_tensor_v2")} | {
    ("torch", f"{kind}Storage")
    for kind in "Bool Byte Char Short Int Long Half BFloat16 Float Double ComplexFloat ComplexDouble".split()
}


def test_the_allow_lists_are_exactly_these():
    """Widening what a checkpoint may build is a change to this test."""
    assert set(safe_load.METADATA_GLOBALS) == METADATA_ADMITTED
    assert set(safe_load.TORCH_DTYPES_AND_LAYOUTS) == {("torch", n) for n in TORCH_DTYPES_AND_LAYOUTS}
    assert set(safe_load.OBJECT_GLOBALS) == OBJECT_ADMITTED
    for module, name in METADATA_ADMITTED | {("torch", n) for n in TORCH_DTYPES_AND_LAYOUTS}:
        safe_load.RestrictedUnpickler(io.BytesIO(), "x").find_class(module, name)  # admitted: no error


def _gadgets(marker: Path) -> list[tuple[str, str, tuple]]:
    """(module, name, arguments): callables that run code, start processes, or read or write files."""
    m = str(marker)
    mkdir = f"__import__('os').mkdir({m!r})"
    return [
        ("builtins", "eval", (mkdir,)),
        ("builtins", "exec", (mkdir,)),
        ("builtins", "getattr", (m, "upper")),
        ("builtins", "__import__", ("os",)),
        ("builtins", "open", (m, "w")),
        ("builtins", "compile", (mkdir, m, "exec")),
        ("__builtin__", "eval", (mkdir,)),  # the protocol-2 spelling
        ("os", "system", (f"mkdir {m}",)),
        ("os", "popen", (f"mkdir {m}",)),
        ("os", "execv", ("/nonexistent/sh", ["sh"])),
        ("os", "mkdir", (m,)),
        ("posix", "system", (f"mkdir {m}",)),
        ("posix", "execv", ("/nonexistent/sh", ["sh"])),
        ("posix", "mkdir", (m,)),
        ("nt", "system", (f"mkdir {m}",)),
        ("subprocess", "Popen", (["mkdir", m],)),
        ("subprocess", "run", (["mkdir", m],)),
        ("subprocess", "check_output", (["mkdir", m],)),
        ("subprocess", "call", (["mkdir", m],)),
        ("importlib", "import_module", ("os",)),
        ("pickle", "loads", (b"",)),
        ("shutil", "rmtree", (m,)),
        ("torch", "load", (m,)),
        ("torch", "save", ({}, m)),
        ("torch", "from_file", (m, True, 8)),
        ("torch", "compile", (None,)),
        ("torch.jit", "load", (m,)),
        ("torch.hub", "load", ("owner/repo", "model")),
        ("torch.storage", "UntypedStorage.from_file", (m, True, 8)),
        ("torch", "UntypedStorage.from_file", (m, True, 8)),
        ("torch.serialization", "load", (m,)),
        ("torch.serialization", "save", ({}, m)),
        ("torch.serialization", "_legacy_load", (m, "cpu", None, {})),
        ("torch.utils.cpp_extension", "load_inline", ("x", mkdir)),
        ("torch._C", "_load_for_lite_interpreter", (m,)),
    ]


def _call_pickle(module: str, name: str, args: tuple, protocol: int = 2) -> bytes:
    """A pickle that calls ``module.name(*args)`` when loaded: GLOBAL, the arguments' tuple, REDUCE."""
    arguments = pickle.dumps(args, protocol=2)[2:-1]  # without PROTO and STOP
    return bytes([0x80, protocol]) + b"c" + f"{module}\n{name}\n".encode() + arguments + b"R."


def _torch_archive(data_pkl: bytes, like: bytes | None = None) -> bytes:
    """A torch.save archive (zip) whose pickle is ``data_pkl``, its other records those of ``like`` (by
    default an archive of ``{}``)."""
    if like is None:
        buf = io.BytesIO()
        torch.save({}, buf)
        like = buf.getvalue()
    src = zipfile.ZipFile(io.BytesIO(like))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for n in src.namelist():
            z.writestr(n, data_pkl if n.endswith("/data.pkl") else src.read(n))
    return out.getvalue()


def _rewrite_manifest(path: Path) -> None:
    (path / manifest.MANIFEST).unlink(missing_ok=True)
    names = [p.name for p in path.iterdir() if p.is_file() and p.name != manifest.MANIFEST]
    manifest.write(path, manifest.describe(path, names))


def _replace_common_state(path: Path, archive: bytes) -> str:
    """Point the checkpoint's common-state item at ``archive`` (appended to its shard file); returns the
    shard's name."""
    with open(path / ".metadata", "rb") as f:
        md = pickle.load(f)  # our own file, before it is crafted
    index = next(i for i in md.storage_data if i.fqn.startswith("common_state"))
    info = md.storage_data[index]
    shard = path / info.relative_path
    offset = shard.stat().st_size
    with open(shard, "ab") as f:
        f.write(archive)
    md.storage_data[index] = dataclasses.replace(info, offset=offset, length=len(archive))
    (path / ".metadata").write_bytes(pickle.dumps(md))
    _rewrite_manifest(path)
    return info.relative_path


@pytest.fixture
def pristine(initial_weights, tmp_path):
    src = tmp_path / "pristine"
    shutil.copytree(initial_weights / "iter_0000000", src)
    return src


def _copy(pristine: Path, tmp_path: Path, i: int) -> Path:
    dst = tmp_path / f"ck{i}" / "iter_0000000"  # load_checkpoint takes an iteration directory by its name
    shutil.copytree(pristine, dst)
    return dst


def test_gadgets_in_metadata_are_refused_before_anything_runs(pristine, tmp_path):
    marker = tmp_path / "marker"
    for i, (module, name, args) in enumerate(_gadgets(marker)):
        path = _copy(pristine, tmp_path, i)
        (path / ".metadata").write_bytes(_call_pickle(module, name, args, protocol=4))
        # the reader every load path uses (patched process-wide by importing megatron_biomed.checkpoint)
        want = rf"^{re.escape(str(path / '.metadata'))}: refusing to load '{re.escape(f'{module}.{name}')}'"
        with pytest.raises(UnsafeCheckpointError, match=want):
            FileSystemReader(str(path)).read_metadata()
        assert not marker.exists(), (module, name)
    # and through the public load, once
    _rewrite_manifest(path)
    with pytest.raises(UnsafeCheckpointError, match=want):
        load_checkpoint(path, [], weights_only=True)
    assert not marker.exists()


def test_gadgets_in_the_common_state_are_refused_before_anything_runs(pristine, tmp_path):
    # The surgery itself is sound: a harmless replacement (a tensor in an OrderedDict) loads.
    from megatron.core import dist_checkpointing

    from megatron_biomed.checkpoint import restricted_loading

    path = _copy(pristine, tmp_path, -1)
    buf = io.BytesIO()
    torch.save([{"iteration": 7, "rng": torch.arange(3, dtype=torch.uint8)}], buf)
    saved = buf.getvalue()
    _replace_common_state(path, _torch_archive(zipfile.ZipFile(buf).read("archive/data.pkl"), like=saved))
    assert verify_checkpoint(path) is True
    with restricted_loading():
        common = dist_checkpointing.load_common_state_dict(str(path))
    assert common["iteration"] == 7 and common["rng"].tolist() == [0, 1, 2]

    marker = tmp_path / "marker"
    for i, (module, name, args) in enumerate(_gadgets(marker)):
        path = _copy(pristine, tmp_path, i)
        shard = _replace_common_state(path, _torch_archive(_call_pickle(module, name, args)))
        want = (
            rf"{re.escape(str(path / shard))} \(item 'common_state[^']*'\): "
            rf"refusing to load '{re.escape(f'{module}.{name}')}'"
        )
        with pytest.raises(UnsafeCheckpointError, match=want):
            load_checkpoint(path, [], weights_only=True)
        assert not marker.exists(), (module, name)


def test_an_item_naming_its_globals_indirectly_or_not_an_archive_is_refused():
    stack_global = b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93\x8c\x011\x85R."  # STACK_GLOBAL, then a call
    with pytest.raises(UnsafeCheckpointError, match=r"^item: refusing to load an object built by the STACK_GLOBAL"):
        safe_load.load_object_bytes(io.BytesIO(_torch_archive(stack_global)), "item")
    raw = _call_pickle("collections", "OrderedDict", ())  # an admitted global, but a bare pickle
    with pytest.raises(UnsafeCheckpointError, match=r"^item: refusing to load an object: not a torch.save archive"):
        safe_load.load_object_bytes(io.BytesIO(raw), "item")


def test_a_gadget_in_a_legacy_common_pt_is_refused_before_anything_runs(pristine, tmp_path):
    """Without a manifest (as before manifests existed) a checkpoint is read unverified, and megatron-core
    reads a legacy ``common.pt`` in place of the common-state item: it goes through the same scan."""
    path = _copy(pristine, tmp_path, 0)
    (path / manifest.MANIFEST).unlink()
    marker = tmp_path / "marker"
    (path / "common.pt").write_bytes(_torch_archive(_call_pickle("os", "system", (f"mkdir {marker}",))))
    with pytest.raises(UnsafeCheckpointError, match=rf"^{re.escape(str(path / 'common.pt'))}: refusing.*os.system"):
        verify_checkpoint(path)
    assert not marker.exists()
