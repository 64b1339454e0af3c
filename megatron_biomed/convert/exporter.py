"""Export a dist checkpoint of any saved layout to a Hugging Face directory (``tools/convert_hf.py export``).

Streams: the checkpoint is read one layer at a time straight from its global tensors (no model is built but
a one-layer skeleton that names the checkpoint's keys), converted by the family's adapter and written into
safetensors shards, so peak memory is a few layers (the checkpoint reader copies what it reads once more) plus
one shard, whatever the depth -- not the model (benchmarks/convert_memory.py measures it). The directory holds
``config.json``, ``generation_config.json``, ``model.safetensors`` (or shards and
``model.safetensors.index.json``) and the tokenizer files, and loads with
``AutoModelForCausalLM.from_pretrained`` / ``AutoTokenizer.from_pretrained`` without custom code. Padded
vocabulary rows are dropped.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from megatron_biomed.config.experiment import ExperimentConfig
from megatron_biomed.convert.hf_io import ShardWriter, copy_tokenizer_files
from megatron_biomed.convert.importer import HF_CONFIG_FILE
from megatron_biomed.convert.registry import LAYER_PREFIX, OUTPUT_LAYER, WORD_EMBEDDINGS, ConversionError, get_adapter

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


def run_experiment_config(checkpoint: str | os.PathLike) -> tuple[Path, ExperimentConfig]:
    """The complete checkpoint directory under ``checkpoint`` and the ExperimentConfig it recorded."""
    from megatron_biomed.config.loading import apply_mapping
    from megatron_biomed.training.checkpointing import RUN_CONFIG, checkpoint_path, read_run_config

    path = checkpoint_path(checkpoint)
    cfg = apply_mapping(ExperimentConfig(), read_run_config(path), source=str(path / RUN_CONFIG))
    return path, cfg


def checkpoint_key_map(cfg: ExperimentConfig) -> tuple[dict[str, str], dict[str, str]]:
    """Our unsharded state-dict names -> dist-checkpoint keys: (non-layer names, layer suffixes). Read from a
    one-layer, narrow skeleton of the same family and layer spec (keys do not depend on the sizes)."""
    from megatron_biomed.inference.loading import single_process_config
    from megatron_biomed.models.registry import build_model_chunks

    s = copy.deepcopy(cfg)
    m = s.model
    groups = m.kv_heads
    m.num_layers, m.num_attention_heads, m.hidden_size = 1, groups, groups * 8
    m.num_query_groups = groups if m.num_query_groups is not None else None
    m.ffn_hidden_size, m.vocab_size, m.make_vocab_size_divisible_by, m.seq_length = 16, 8, 8, 8
    s.train.precision = "fp32"
    skeleton = build_model_chunks(single_process_config(s))[0]
    skeleton = getattr(skeleton, "module", skeleton)
    non_layer, layer = {}, {}
    first = LAYER_PREFIX.format(0)
    for name, sharded in skeleton.sharded_state_dict().items():
        if name.endswith("_extra_state"):
            continue
        if name.startswith(first):
            layer[name[len(first) :]] = sharded.key
        else:
            non_layer[name] = sharded.key
    return non_layer, layer


def _slice_planner(slices: dict):
    """A torch.distributed.checkpoint load planner that reads, for each key, only the chunk starting at the
    given offsets into the given tensor (one layer of a layer-stacked tensor), in this one process."""
    from torch.distributed.checkpoint import DefaultLoadPlanner
    from torch.distributed.checkpoint.metadata import ChunkStorageMetadata
    from torch.distributed.checkpoint.planner import LoadPlan
    from torch.distributed.checkpoint.planner_helpers import create_read_items_for_chunk_list

    class SlicePlanner(DefaultLoadPlanner):
        def create_local_plan(self) -> LoadPlan:
            items = []
            for key, (offsets, dest) in slices.items():
                chunk = ChunkStorageMetadata(offsets=torch.Size(offsets), sizes=dest.shape)
                items += create_read_items_for_chunk_list(key, self.metadata.state_dict_metadata[key], [chunk])
            return LoadPlan(items)

        def lookup_tensor(self, index):
            return slices[index.fqn][1]

    return SlicePlanner()


class CheckpointTensors:
    """Global tensors of a torch_dist checkpoint read straight from its files, a layer at a time."""

    def __init__(self, path: Path, num_layers: int) -> None:
        from torch.distributed.checkpoint import FileSystemReader

        self.path, self.num_layers = path, num_layers
        self.metadata = FileSystemReader(str(path)).read_metadata().state_dict_metadata

    def shape(self, key: str) -> tuple[int, ...]:
        if key not in self.metadata:
            raise ConversionError(f"{self.path}: tensor {key!r} is not in the checkpoint")
        return tuple(self.metadata[key].size)

    def dtype(self, key: str) -> torch.dtype:
        return self.metadata[key].properties.dtype

    def load(self, wanted: dict[str, str], layer: int | None = None) -> dict[str, torch.Tensor]:
        """``{our name: checkpoint key}`` -> tensors: whole, or layer ``layer`` of layer-stacked keys."""
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint import FileSystemReader

        slices = {}
        for key in wanted.values():
            shape = self.shape(key)
            if layer is None:
                slices[key] = ((0,) * len(shape), torch.empty(shape, dtype=self.dtype(key)))
            else:
                if shape[0] != self.num_layers:
                    raise ConversionError(
                        f"{self.path}: {key} holds {shape[0]} layers, the run config {self.num_layers}"
                    )
                dest = torch.empty((1, *shape[1:]), dtype=self.dtype(key))
                slices[key] = ((layer,) + (0,) * (len(shape) - 1), dest)
        state = {key: dest for key, (_, dest) in slices.items()}
        dcp.load(state, storage_reader=FileSystemReader(str(self.path)), planner=_slice_planner(slices), no_dist=True)
        return {name: (slices[key][1] if layer is None else slices[key][1][0]) for name, key in wanted.items()}


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
        from megatron_biomed.tokenizer import load_tokenizer

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
) -> ExportResult:
    """Write the checkpoint under ``checkpoint`` (latest complete iteration, or an ``iter_*`` directory) as an
    HF model directory ``out``. ``dtype``: float32 / bfloat16 / float16 (default: the checkpoint's);
    ``tokenizer``: directory whose tokenizer files are copied (default: the run's ``data.tokenizer``)."""
    path, cfg = run_experiment_config(checkpoint)
    m = cfg.model
    adapter = get_adapter(m.family)
    if dtype is not None and dtype not in DTYPES:
        raise ConversionError(f"dtype={dtype!r}: choose one of {', '.join(DTYPES)}")
    non_layer, layer = checkpoint_key_map(cfg)
    ckpt = CheckpointTensors(path, m.num_layers)
    out_dtype = DTYPES[dtype] if dtype else ckpt.dtype(non_layer[WORD_EMBEDDINGS])
    out = Path(out)
    writer = ShardWriter(out, max_shard_size, out_dtype)

    names = adapter.global_names(m)
    if names is not None:  # plain renames: one at a time (the embeddings are the largest tensors)
        for name, hf_name in names.items():
            if name not in non_layer:
                raise ConversionError(f"{path}: the checkpoint has no tensor for {name} (model family {m.family})")
            writer.add(hf_name, _unpadded(name, ckpt.load({name: non_layer[name]})[name], m.vocab_size))
    else:
        ours = {name: _unpadded(name, t, m.vocab_size) for name, t in ckpt.load(non_layer).items()}
        for hf_name, t in adapter.globals_to_hf(m, ours).items():
            writer.add(hf_name, t)
        del ours
    for i in range(m.num_layers):
        tensors = ckpt.load(layer, layer=i)
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
    try:
        import transformers

        return transformers.__version__
    except ImportError:
        return "unknown"
