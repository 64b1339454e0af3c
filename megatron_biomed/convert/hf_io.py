"""Hugging Face checkpoint files: ``config.json``, and tensors one at a time.

* :func:`read_config_json` -- ``config.json`` decoded as transformers decodes it.
* :class:`HFReader` -- reads tensors by name from a directory of ``model.safetensors``, sharded safetensors
  with ``model.safetensors.index.json``, or ``pytorch_model*.bin`` (``torch.load(weights_only=True,
  mmap=True)``, one shard open at a time): only what is asked for is loaded.
* :class:`ShardWriter` -- writes tensors into safetensors shards of at most ``max_shard_bytes`` each and, at
  the end, ``model.safetensors.index.json``: only the shard being filled is held in memory.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import shutil
from pathlib import Path

import torch
from safetensors import safe_open

from megatron_biomed.convert.registry import ConversionError, optional_transformers

SAFE_INDEX = "model.safetensors.index.json"
BIN_INDEX = "pytorch_model.bin.index.json"
# Files of a tokenizer directory that travel with a converted model.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "added_tokens.json",
    "new_token_pieces.json",
)


# transformers (5.x) writes non-finite floats, which JSON lacks, as {"__float__": "Infinity"}.
_TAGGED_FLOATS = {"Infinity": math.inf, "-Infinity": -math.inf, "NaN": math.nan}


def _untag_float(obj: dict):
    if set(obj) == {"__float__"} and obj["__float__"] in _TAGGED_FLOATS:
        return _TAGGED_FLOATS[obj["__float__"]]
    return obj


def read_config_json(file: str | os.PathLike) -> dict:
    """The mapping in a ``config.json`` as transformers reads the file (``PretrainedConfig.get_config_dict``:
    its encoding of non-finite floats decoded); without transformers, as plain JSON with that encoding
    decoded here. The mapping is not yet completed with a config class's defaults (that is
    convert/registry.py's :meth:`~megatron_biomed.convert.registry.HFAdapter.read_config`): a
    ``mamba_ssm`` config.json is not a transformers config."""
    file = Path(file)
    if not file.is_file():
        raise ConversionError(f"{file} is missing: give a directory written by save_pretrained")
    transformers = optional_transformers()
    try:
        if transformers is None:
            return json.loads(file.read_text(), object_hook=_untag_float)
        return transformers.PretrainedConfig.get_config_dict(str(file), local_files_only=True)[0]
    except (OSError, ValueError) as e:
        raise ConversionError(f"{file}: not a readable config.json ({e})") from e


class HFReader:
    """Tensors of an HF model directory by name (``read(name)``); remembers which names were read."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.dir = Path(directory)
        self._where: dict[str, Path] = {}
        self._open: dict[Path, object] = {}
        self.read_names: set[str] = set()
        d = self.dir
        if (d / SAFE_INDEX).is_file():
            self._from_index(d / SAFE_INDEX)
        elif (d / "model.safetensors").is_file():
            self._from_safetensors(d / "model.safetensors")
        elif (d / BIN_INDEX).is_file():
            self._from_index(d / BIN_INDEX)
        elif (d / "pytorch_model.bin").is_file():
            self._from_bin(d / "pytorch_model.bin")
        else:
            raise ConversionError(
                f"{d}: no model.safetensors, {SAFE_INDEX}, pytorch_model.bin or {BIN_INDEX} here "
                "(give the directory save_pretrained wrote)"
            )

    def _from_index(self, index: Path) -> None:
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (ValueError, KeyError) as e:
            raise ConversionError(f"{index}: not an index file with a 'weight_map' ({e})") from e
        for name, file in weight_map.items():
            self._where[name] = self.dir / file
        for file in sorted(set(self._where.values())):
            if not file.is_file():
                raise ConversionError(f"{index} names {file.name}, which is missing")

    def _from_safetensors(self, file: Path) -> None:
        with safe_open(str(file), "pt") as f:
            for name in f.keys():
                self._where[name] = file

    def _from_bin(self, file: Path) -> None:
        for name in self._bin(file):
            self._where[name] = file

    def _bin(self, file: Path) -> dict:
        """The memory-mapped state dict of one ``.bin`` shard. Only one stays open: the pages of a mapped file
        that were read count in this process's memory until it is unmapped, so keeping every shard open
        would grow to the model's size over an import."""
        if file not in self._open:
            self._open.clear()
            try:
                self._open[file] = torch.load(str(file), map_location="cpu", mmap=True, weights_only=True)
            except (pickle.UnpicklingError, RuntimeError) as e:
                raise ConversionError(
                    f"{file}: not a state dict of tensors that torch.load(weights_only=True, mmap=True) reads "
                    f"(a pickle asking for other objects is refused, so it cannot run code): {e}"
                ) from e
        return self._open[file]

    def close(self) -> None:
        """Unmap the open ``.bin`` shard (tensors read from it stay valid)."""
        self._open.clear()

    def names(self) -> list[str]:
        return list(self._where)

    def resolve(self, name: str) -> str | None:
        """``name`` as stored: some GPT-2 checkpoints (the original ``gpt2``) drop the ``transformer.`` prefix."""
        if name in self._where:
            return name
        if name.startswith("transformer.") and name[len("transformer.") :] in self._where:
            return name[len("transformer.") :]
        return None

    def read(self, name: str) -> torch.Tensor:
        stored = self.resolve(name)
        if stored is None:
            raise ConversionError(f"{self.dir}: tensor {name!r} is not in the checkpoint")
        self.read_names.add(stored)
        file = self._where[stored]
        if file.suffix == ".safetensors":
            with safe_open(str(file), "pt") as f:
                return f.get_tensor(stored)
        # A copy: a view into the mapped file would keep the whole shard mapped after the reader moved on.
        return self._bin(file)[stored].clone()

    __call__ = read


class ShardWriter:
    """Append tensors; shards are written when full (``model-XXXXX-of-YYYYY.safetensors``) and the index by
    :meth:`close`. A single model file (``model.safetensors``, no index) when everything fits one shard."""

    def __init__(self, directory: str | os.PathLike, max_shard_bytes: int, dtype: torch.dtype | None = None) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_shard_bytes = max_shard_bytes
        self.dtype = dtype
        self._pending: dict[str, torch.Tensor] = {}
        self._pending_bytes = 0
        self._shards: list[tuple[Path, list[str]]] = []
        self.total_bytes = 0
        self.largest_shard_bytes = 0

    def add(self, name: str, tensor: torch.Tensor) -> None:
        t = tensor.detach()
        if self.dtype is not None and t.is_floating_point():
            t = t.to(self.dtype)
        t = t.contiguous()
        size = t.numel() * t.element_size()
        if t.untyped_storage().nbytes() > size:  # a view (a row slice, q of qkv): keep only its own bytes
            t = t.clone()
        if self._pending and self._pending_bytes + size > self.max_shard_bytes:
            self._flush()
        self._pending[name] = t
        self._pending_bytes += size
        self.total_bytes += size

    def _flush(self) -> None:
        path = self.dir / f"shard-{len(self._shards):05d}.tmp"
        write_safetensors(path, self._pending, metadata={"format": "pt"})
        self.largest_shard_bytes = max(self.largest_shard_bytes, self._pending_bytes)
        self._shards.append((path, list(self._pending)))
        self._pending, self._pending_bytes = {}, 0

    def close(self) -> list[Path]:
        """Write what is left, name the shards and write the index. Returns the shard files."""
        if self._pending or not self._shards:
            self._flush()
        n = len(self._shards)
        if n == 1:
            final = self.dir / "model.safetensors"
            os.replace(self._shards[0][0], final)
            return [final]
        weight_map, files = {}, []
        for i, (tmp, names) in enumerate(self._shards):
            final = self.dir / f"model-{i + 1:05d}-of-{n:05d}.safetensors"
            os.replace(tmp, final)
            files.append(final)
            weight_map.update({name: final.name for name in names})
        index = {"metadata": {"total_size": self.total_bytes}, "weight_map": weight_map}
        (self.dir / SAFE_INDEX).write_text(json.dumps(index, indent=2) + "\n")
        return files


_SAFETENSORS_DTYPES = {
    torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16", torch.float64: "F64",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
    torch.bool: "BOOL",
}  # fmt: skip


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> None:
    """Write ``tensors`` (contiguous, on CPU) in the safetensors format, each tensor's bytes straight from its
    memory: unlike ``safetensors.torch.save_file``, which first copies every tensor into a bytes object, this
    needs no second copy of the shard."""
    header: dict = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for name, t in tensors.items():
        if t.dtype not in _SAFETENSORS_DTYPES:
            raise ConversionError(f"{name}: dtype {t.dtype} has no safetensors name")
        size = t.numel() * t.element_size()
        header[name] = {
            "dtype": _SAFETENSORS_DTYPES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for t in tensors.values():
            if t.numel():
                f.write(memoryview(t.contiguous().view(-1).view(torch.uint8).numpy()))


def copy_tokenizer_files(src: str | os.PathLike, dst: str | os.PathLike) -> list[str]:
    """Copy the tokenizer files found in ``src`` (a directory, or a tokenizer.json) to ``dst``; their names."""
    src, dst = Path(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    if src.is_file():
        shutil.copy2(src, dst / src.name)
        return [src.name]
    copied = []
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)
            copied.append(name)
    return copied
