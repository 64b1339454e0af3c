"""Reading checkpoints without running code from them.

A dist checkpoint is read through PyTorch's distributed-checkpoint reader, which unpickles two kinds of part:

* the ``.metadata`` file, with a plain ``pickle.load`` (``FileSystemReader.read_metadata``,
  torch/distributed/checkpoint/filesystem.py), and
* every non-tensor item (megatron-core's common state, ``ShardedObject``s such as the RNG states, the
  ``_extra_state`` of layers), with ``torch.load(..., weights_only=False)`` (``DefaultLoadPlanner.load_bytes``,
  torch/distributed/checkpoint/default_planner.py, which megatron-core's ``MCoreLoadPlanner`` inherits).

Either runs whatever a crafted file asks (a ``__reduce__`` that calls ``os.system``) on every rank that loads it.
``restricted_loading()`` patches both for the duration of a load:

* ``.metadata`` goes through ``RestrictedUnpickler``, which admits only ``METADATA_GLOBALS``: the metadata
  dataclasses and enums of torch.distributed.checkpoint, ``torch.Size``, torch dtypes and layouts. That is
  all a checkpoint written by megatron-core 0.19 / torch 2.14 holds there.
* non-tensor items (and a legacy ``common.pt``) are first scanned: every global their pickle names must be
  one of ``OBJECT_GLOBALS`` (``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` and the typed
  storages of plain dtypes: tensors and nothing else), and any opcode that looks a global up another way is
  refused; only then are they read with ``torch.load(weights_only=True)``. PyTorch's own restricted
  unpickler alone would not do: its allow-list is process-wide, and megatron-core widens it when imported
  (``megatron.core.safe_globals.register_safe_globals``: argparse.Namespace, PosixPath, numpy, BytesIO,
  OptimizerConfig...). Our common state (iteration, consumed samples, layout, scheduler and optimizer
  param-group numbers, ``use_distributed_optimizer``), the RNG states (byte tensors) and the layers'
  ``_extra_state`` (None) need nothing more.

Anything else is refused with ``UnsafeCheckpointError`` naming the class and the file, before any object of
the file is built. Tensor data itself is already read by PyTorch with ``weights_only=True``.

The patch is process-wide while the context is open (re-entrant; other threads loading a DCP checkpoint at the
same time are restricted too, which is only ever safer). ``install()`` keeps it on for the rest of the process;
importing ``megatron_biomed.checkpoint`` (any of its modules) does that, so every load path of ours (resume,
init_from, evaluation, generation, conversion's direct ``FileSystemReader`` reads) is covered once it is
imported. Code that reads a checkpoint with ``torch.distributed.checkpoint`` without importing it should use
``restricted_loading()``.
"""

from __future__ import annotations

import contextlib
import io
import pickle
import pickletools
import threading
import zipfile
from pathlib import Path
from typing import Iterator

import torch
from megatron.core.dist_checkpointing import serialization as mcore_serialization
from torch.distributed.checkpoint import default_planner, filesystem
from torch.distributed.checkpoint._traverse import set_element
from torch.distributed.checkpoint.metadata import StorageMeta

from megatron_biomed.errors import BiomedError

_DCP_MD = "torch.distributed.checkpoint.metadata"
_DCP_PLANNER = "torch.distributed.checkpoint.planner"

METADATA_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
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
        # Looks a layout up by name among torch's own layouts (torch/serialization.py); calls nothing else.
        ("torch.serialization", "_get_layout"),
        ("collections", "OrderedDict"),
    }
)

# torch's dtypes and layouts (``torch.float32``, ``torch.strided``...), which .metadata names by their global.
# Enumerated once from the objects torch itself defines (no lazy attribute of torch is looked up by a name
# read from a file).
TORCH_DTYPES_AND_LAYOUTS: frozenset[tuple[str, str]] = frozenset(
    ("torch", name) for name, value in vars(torch).items() if isinstance(value, (torch.dtype, torch.layout))
)

# Typed storages a tensor in a torch.save archive is rebuilt from (one per plain dtype).
_STORAGES = ("Bool", "Byte", "Char", "Short", "Int", "Long", "Half", "BFloat16", "Float", "Double")
_STORAGES += ("ComplexFloat", "ComplexDouble")

# Every global a non-tensor item of our checkpoints may name: tensors (the RNG states) and plain containers.
OBJECT_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {("collections", "OrderedDict"), ("torch._utils", "_rebuild_tensor_v2")}
    | {("torch", f"{kind}Storage") for kind in _STORAGES}
)
# Opcodes that look a global up other than by GLOBAL's "module name" argument (refused in object items:
# PyTorch's weights_only reader supports none of them either).
_INDIRECT_GLOBALS = frozenset({"STACK_GLOBAL", "INST", "OBJ", "EXT1", "EXT2", "EXT4"})


class UnsafeCheckpointError(BiomedError, pickle.UnpicklingError):
    """A checkpoint file asks to build an object of a class we do not admit."""


def _is_torch_dtype_or_layout(module: str, name: str) -> bool:
    return (module, name) in TORCH_DTYPES_AND_LAYOUTS


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that builds only ``allowed`` globals (and torch dtypes/layouts), naming ``source``
    in its refusal. Persistent ids are refused by the base class."""

    def __init__(self, file, source: str, allowed: frozenset[tuple[str, str]] = METADATA_GLOBALS):
        super().__init__(file)
        self.source = source
        self.allowed = allowed

    def find_class(self, module: str, name: str):
        if (module, name) in self.allowed or _is_torch_dtype_or_layout(module, name):
            return super().find_class(module, name)
        err = UnsafeCheckpointError(
            f"{self.source}: refusing to load '{module}.{name}': not a class our checkpoints contain, so this file "
            "may run code when loaded. Do not load it; if it is genuinely yours, re-save it with this version"
        )
        _local.refused = err
        raise err


def _refuse(source: str, what: str, why: str = "not a class our checkpoints contain") -> UnsafeCheckpointError:
    err = UnsafeCheckpointError(
        f"{source}: refusing to load {what}: {why}, so this item may run code when loaded. Do not load it"
    )
    _local.refused = err
    return err


def object_item_globals(data: bytes, source: str) -> list[tuple[str, str]]:
    """The globals the pickle(s) of a torch.save archive name, read without unpickling anything.

    Raises UnsafeCheckpointError for what is not such an archive, or for a pickle that looks a global up
    in a way this scan cannot read."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        pickles = [archive.read(n) for n in archive.namelist() if n.endswith(".pkl")]
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise _refuse(source, "an object", f"not a torch.save archive ({e})") from None
    found = []
    for body in pickles:
        try:
            for op, arg, _pos in pickletools.genops(body):
                if op.name == "GLOBAL":
                    module, _, name = arg.partition(" ")
                    found.append((module, name))
                elif op.name in _INDIRECT_GLOBALS:
                    raise _refuse(
                        source,
                        f"an object built by the {op.name} opcode",
                        "a way to name a class this check cannot read",
                    )
        except (ValueError, EOFError) as e:
            raise _refuse(source, "an object", f"an unreadable pickle ({e})") from None
    return found


def load_object_bytes(value: io.BytesIO, source: str):
    """Read a non-tensor checkpoint item (a torch.save archive): refuse it unless every global its pickle
    names is one of OBJECT_GLOBALS, then ``torch.load`` it with PyTorch's restricted unpickler."""
    data = value.getvalue()
    for module, name in object_item_globals(data, source):
        if (module, name) not in OBJECT_GLOBALS:
            raise _refuse(source, f"'{module}.{name}'")
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise _refuse(
            source, "an object", f"PyTorch's restricted unpickler refused it ({str(e).splitlines()[0]})"
        ) from None


_lock = threading.RLock()
_depth = 0
_saved: dict = {}
_local = threading.local()


def _patched_read_metadata(self, *args, **kwargs):
    rank = kwargs.get("rank")
    path = self._get_metadata_path(rank)
    with self.fs.create_stream(path, "rb") as f:
        metadata = RestrictedUnpickler(f, str(path)).load()
    if getattr(metadata, "storage_meta", None) is None:
        metadata.storage_meta = StorageMeta()
    metadata.storage_meta.load_id = self.load_id
    # Where each item lives, so that a refused item can be named by its file.
    _local.storage = (Path(str(self.path)), getattr(metadata, "storage_data", None) or {})
    return metadata


def _item_source(read_item) -> str:
    root, storage = getattr(_local, "storage", (None, {}))
    info = storage.get(read_item.storage_index) if storage else None
    where = (root / info.relative_path) if (root is not None and info is not None) else (root or "checkpoint")
    return f"{where} (item '{read_item.dest_index.fqn}')"


def _patched_load_bytes(self, read_item, value: io.BytesIO) -> None:
    obj = load_object_bytes(value, _item_source(read_item))
    if self.flatten_state_dict:
        set_element(self.original_state_dict, self.mappings[read_item.dest_index.fqn], obj)
    else:
        self.state_dict[read_item.dest_index.fqn] = obj


def _patched_load_common(checkpoint_dir: str):
    """megatron-core's reader of a legacy ``common.pt`` (a plain torch.load), restricted like the items."""
    path = Path(checkpoint_dir) / mcore_serialization.COMMON_STATE_FNAME
    return load_object_bytes(io.BytesIO(path.read_bytes()), str(path))


def _enter() -> None:
    global _depth
    with _lock:
        if _depth == 0:
            _saved["read_metadata"] = filesystem.FileSystemReader.read_metadata
            _saved["load_bytes"] = default_planner.DefaultLoadPlanner.load_bytes
            filesystem.FileSystemReader.read_metadata = _patched_read_metadata
            default_planner.DefaultLoadPlanner.load_bytes = _patched_load_bytes
            _saved["load_common"] = mcore_serialization.load_common
            mcore_serialization.load_common = _patched_load_common
        _depth += 1


_installed = False


def install() -> None:
    """Restrict DCP loading for the rest of the process (idempotent). ``megatron_biomed.checkpoint`` calls
    this when imported, so that code of ours reading a checkpoint with ``torch.distributed.checkpoint`` directly
    (conversion's tensor reader, inference's metadata look-ups) is restricted too."""
    global _installed
    with _lock:
        if not _installed:
            _enter()
            _installed = True


@contextlib.contextmanager
def restricted_loading() -> Iterator[None]:
    """While open, DCP ``.metadata`` files and non-tensor items are read by restricted unpicklers."""
    global _depth
    _enter()
    outer = getattr(_local, "refused", None)
    _local.refused = None
    try:
        yield
    except UnsafeCheckpointError:
        raise
    except BaseException as e:
        # PyTorch's reader wraps errors of the metadata read and of the load plan (AssertionError, and
        # CheckpointException, a BaseException): surface the refusal itself.
        refused = getattr(_local, "refused", None)
        if refused is not None:
            raise refused from e
        raise
    finally:
        _local.refused = outer
        with _lock:
            _depth -= 1
            if _depth == 0:
                filesystem.FileSystemReader.read_metadata = _saved.pop("read_metadata")
                default_planner.DefaultLoadPlanner.load_bytes = _saved.pop("load_bytes")
                mcore_serialization.load_common = _saved.pop("load_common")
