"""Export a dist checkpoint of any saved layout to a Hugging Face directory (``tools/convert_hf.py export``).

Streams: the checkpoint is read one layer at a time straight from its global tensors, converted by the family's
adapter and written into safetensors shards, so peak memory is a few layers (the checkpoint reader copies what it
reads once more) plus one shard, whatever the depth -- not the model (benchmarks/convert_memory.py measures it).
Where each tensor is stored (a slice of a layer-stacked key, a key per layer, parts that a factory joins) is
megatron-core's account of it: the sharded state dict of the model built on the meta device, which costs no
memory. The directory holds ``config.json``, ``generation_config.json``, ``model.safetensors`` (or shards and
``model.safetensors.index.json``) and the tokenizer files, and loads with
``AutoModelForCausalLM.from_pretrained`` / ``AutoTokenizer.from_pretrained`` without custom code. Padded
vocabulary rows are dropped.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from megatron.core.dist_checkpointing.mapping import (
    ShardedObject,
    ShardedTensor,
    ShardedTensorFactory,
    apply_factories,
    apply_factory_merges,
)
from torch.distributed.checkpoint import DefaultLoadPlanner, FileSystemReader
from torch.distributed.checkpoint.metadata import ChunkStorageMetadata
from torch.distributed.checkpoint.planner import LoadPlan
from torch.distributed.checkpoint.planner_helpers import create_read_items_for_chunk_list

from megatron_biomed.checkpoint import run_experiment_config
from megatron_biomed.config.experiment import ExperimentConfig
from megatron_biomed.convert.hf_io import ShardWriter, copy_tokenizer_files
from megatron_biomed.convert.importer import HF_CONFIG_FILE
from megatron_biomed.convert.registry import (
    LAYER_PREFIX,
    OUTPUT_LAYER,
    WORD_EMBEDDINGS,
    ConversionError,
    get_adapter,
    optional_transformers,
)
from megatron_biomed.models.registry import build_model_chunks
from megatron_biomed.parallel.initialize import single_process_config
from megatron_biomed.tokenizer import load_tokenizer

log = logging.getLogger(__name__)

DTYPES = {
    "float32": torch.float32, "fp32": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16,
}  # fmt: skip
_HF_DTYPE_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}
_SPECIAL = ("bos_token_id", "eos_token_id", "pad_token_id")


@dataclass
class ExportResult:
    out: Path
    files: list[Path]
    largest_shard_bytes: int
    total_bytes: int


def stored_layout(cfg: ExperimentConfig, padded_vocab: int) -> tuple[dict, list[dict]]:
    """How each of our unsharded tensors is stored in a dist checkpoint of ``cfg``: megatron-core's sharded
    state dict of the model at TP = PP = 1 with ``padded_vocab`` rows (the checkpoint's), built on the meta
    device (no memory). Returns (entries outside the layers by our name, one dict per layer by suffix).

    Its entries say what the files hold, whatever the family: a ShardedTensor names its key and where in it
    the tensor lies (a GPT layer is a slice of a layer-stacked key; a Mamba layer has keys of its own,
    ``decoder.layers.<i>.``); a ShardedTensorFactory stores a tensor as parts (MambaMixer's in_proj as
    ``.z/.x/.B/.C/.dt`` keys, conv1d as ``.x/.B/.C``; SwiGLU's fc1 as two slices) and merges them back."""
    one = single_process_config(cfg, padded_vocab=padded_vocab)
    with torch.device("meta"):
        model = build_model_chunks(one)[0]
    model = getattr(model, "module", model)
    outside: dict = {}
    layers: list[dict] = [{} for _ in range(cfg.model.num_layers)]
    for name, sharded in model.sharded_state_dict().items():
        if isinstance(sharded, ShardedObject) or name.endswith("_extra_state"):
            continue
        for i, layer in enumerate(layers):
            prefix = LAYER_PREFIX.format(i)
            if name.startswith(prefix):
                layer[name[len(prefix) :]] = sharded
                break
        else:
            outside[name] = sharded
    return outside, layers


def _chunk_planner(chunks: dict):
    """A torch.distributed.checkpoint load planner that reads, in this one process, each (key, offsets) of
    ``chunks`` into its tensor: the chunk of that stored key starting at those offsets."""

    class ChunkPlanner(DefaultLoadPlanner):
        def create_local_plan(self) -> LoadPlan:
            items = []
            for (key, offsets), dest in chunks.items():
                chunk = ChunkStorageMetadata(offsets=torch.Size(offsets), sizes=dest.shape)
                items += create_read_items_for_chunk_list(key, self.metadata.state_dict_metadata[key], [chunk])
            return LoadPlan(items)

        def lookup_tensor(self, index):
            return chunks[(index.fqn, tuple(index.offset))]

    return ChunkPlanner()


class CheckpointTensors:
    """Global tensors of a torch_dist checkpoint read straight from its files, as :func:`stored_layout` says
    they are stored. ``prefix``: read the copy of the weights stored under it (``"ema."``: the moving average a
    run with optimizer.ema_decay saves next to the model)."""

    def __init__(self, path: Path, prefix: str = "") -> None:
        self.path = path
        self.prefix = prefix
        self.metadata = FileSystemReader(str(path)).read_metadata().state_dict_metadata

    def shape(self, key: str) -> tuple[int, ...]:
        if self.prefix + key not in self.metadata:
            raise ConversionError(f"{self.path}: tensor {self.prefix + key!r} is not in the checkpoint")
        return tuple(self.metadata[self.prefix + key].size)

    def dtype(self, key: str) -> torch.dtype:
        return self.metadata[self.prefix + key].properties.dtype

    def load(self, stored: dict) -> dict[str, torch.Tensor]:
        """``{name: ShardedTensor or ShardedTensorFactory}`` (entries of :func:`stored_layout`) -> tensors."""
        built = dict(stored)
        apply_factories(built)  # a factory's entry becomes the ShardedTensors of its parts
        chunks: dict[tuple[str, tuple[int, ...]], torch.Tensor] = {}

        def destination(sh: ShardedTensor) -> torch.Tensor:
            if self.shape(sh.key) != tuple(sh.global_shape):
                raise ConversionError(
                    f"{self.path}: {sh.key} has shape {self.shape(sh.key)}, the run config's model "
                    f"{tuple(sh.global_shape)}"
                )
            data = torch.empty(tuple(sh.local_shape), dtype=self.dtype(sh.key))
            # The axes megatron-core prepends (a layer-stacked key's layer) have size 1 in the chunk read.
            chunks[(self.prefix + sh.key, tuple(sh.global_offset))] = data.view((1,) * sh.prepend_axis_num + data.shape)
            return data

        def read(x):
            if isinstance(x, ShardedTensor):
                return destination(x)
            if isinstance(x, list):
                return [read(v) for v in x]
            if isinstance(x, dict):
                return {k: read(v) for k, v in x.items()}
            raise ConversionError(f"{self.path}: no way to read a {type(x).__name__} entry of the state dict")

        tensors = {name: read(x) for name, x in built.items()}
        state = {f"{key}@{offsets}": dest for (key, offsets), dest in chunks.items()}
        dcp.load(state, storage_reader=FileSystemReader(str(self.path)), planner=_chunk_planner(chunks), no_dist=True)
        factories = {name: x for name, x in stored.items() if isinstance(x, ShardedTensorFactory)}
        return apply_factory_merges(tensors, factories)  # the parts of each factory's tensor joined again


def _unpadded(name: str, t: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """``t`` without Megatron's padding rows (freeing them) when it is a vocabulary-sized tensor."""
    return t[:vocab_size].clone() if name in (WORD_EMBEDDINGS, OUTPUT_LAYER) else t


def special_token_ids(path: Path, tokenizer_dir: str | None) -> dict:
    """bos / eos / pad ids: from the HF config an import recorded beside the checkpoint, else the tokenizer's
    ``<|endoftext|>`` for bos and eos."""
    for candidate in (path / HF_CONFIG_FILE, path.parent / HF_CONFIG_FILE):
        if candidate.is_file():
            hf = json.loads(candidate.read_text())
            return {k: hf[k] for k in _SPECIAL if hf.get(k) is not None}
    if tokenizer_dir:
        try:
            eod = load_tokenizer(tokenizer_dir).eod_id
            return {"bos_token_id": eod, "eos_token_id": eod}
        except (OSError, ValueError):
            pass
    return {}


def export_hf(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    *,
    dtype: str | None = None,
    tokenizer: str | os.PathLike | None = None,
    max_shard_size: int = 5 * 2**30,
    weights: str = "model",
) -> ExportResult:
    """Write the checkpoint under ``checkpoint`` (latest complete iteration, or an ``iter_*`` directory) as an
    HF model directory ``out``. ``dtype``: float32 / bfloat16 / float16 (default: the checkpoint's);
    ``tokenizer``: directory whose tokenizer files are copied (default: the run's ``data.tokenizer``);
    ``weights``: "model", or the name of other weights the checkpoint holds ("ema": the moving average of
    optimizer.ema_decay)."""
    path, cfg = run_experiment_config(checkpoint)
    m = cfg.model
    adapter = get_adapter(m.family)
    if dtype is not None and dtype not in DTYPES:
        raise ConversionError(f"dtype={dtype!r}: choose one of {', '.join(DTYPES)}")
    ckpt = CheckpointTensors(path, "" if weights == "model" else f"{weights}.")
    outside, layers = stored_layout(cfg, padded_vocab=ckpt.shape(WORD_EMBEDDINGS)[0])
    out_dtype = DTYPES[dtype] if dtype else ckpt.dtype(WORD_EMBEDDINGS)
    out = Path(out)
    writer = ShardWriter(out, max_shard_size, out_dtype)

    names = adapter.global_names(m)
    if names is not None:  # plain renames: one at a time (the embeddings are the largest tensors)
        for name, hf_name in names.items():
            if name not in outside:
                raise ConversionError(f"{path}: the checkpoint has no tensor for {name} (model family {m.family})")
            writer.add(hf_name, _unpadded(name, ckpt.load({name: outside[name]})[name], m.vocab_size))
    else:
        ours = {name: _unpadded(name, t, m.vocab_size) for name, t in ckpt.load(outside).items()}
        for hf_name, t in adapter.globals_to_hf(m, ours).items():
            writer.add(hf_name, t)
        del ours
    for i, stored in enumerate(layers):
        tensors = ckpt.load(stored)
        for name, t in adapter.layer_to_hf(m, i, tensors).items():
            writer.add(name, t)
        del tensors
    files = writer.close()

    tok_dir = str(tokenizer) if tokenizer else cfg.data.tokenizer
    special = special_token_ids(path, tok_dir)
    hf_config = adapter.hf_config(m, special, _HF_DTYPE_NAMES[out_dtype])
    hf_config["transformers_version"] = _transformers_version()
    (out / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n")
    generation = {"_from_model_config": True, **special}
    (out / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    copied = []
    if tok_dir and Path(tok_dir).exists():
        copied = copy_tokenizer_files(tok_dir, out)
    elif tok_dir:
        log.warning("tokenizer %s does not exist: exported without tokenizer files", tok_dir)
    log.info(
        "exported %s -> %s: %d file(s), %.1f MiB, largest shard %.1f MiB, tokenizer files %s",
        path, out, len(files), writer.total_bytes / 2**20, writer.largest_shard_bytes / 2**20, copied or "none",
    )  # fmt: skip
    return ExportResult(out, files, writer.largest_shard_bytes, writer.total_bytes)


def _transformers_version() -> str:
    transformers = optional_transformers()  # export needs none: it only names the version in config.json
    return transformers.__version__ if transformers is not None else "unknown"
