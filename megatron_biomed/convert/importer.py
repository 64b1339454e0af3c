"""Import a Hugging Face directory into our dist checkpoint (``tools/convert_hf.py import``).

The model config comes from ``config.json``, read as transformers reads it, through the family's adapter
(and, when a preset is named, must agree with the preset's architecture field by field). Dist checkpoints hold
global tensors, so the result loads at any TP / PP / VPP layout whose vocabulary padding it was made for
(``tensor_model_parallel_size``: the embedding is padded to a multiple of ``make_vocab_size_divisible_by x TP``).

Streams: the model is built on the meta device (names and shapes, no memory), and its tensors are read from
the HF files, converted and written one group at a time -- each tensor outside the layers alone, then one
layer -- by convert/dist_writer.py's save strategy, so peak memory is about the largest of those (the padded
embedding, or a layer), not the model (benchmarks/convert_memory.py measures it). The checkpoint is published
(run_config.yaml, manifest, rename, tracker) by checkpoint/publish.py, as every save is.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch
from megatron.core.dist_checkpointing.mapping import ShardedObject

from megatron_biomed.checkpoint import save_weights
from megatron_biomed.config.experiment import ExperimentConfig
from megatron_biomed.config.loading import apply_overrides
from megatron_biomed.config.model import ModelConfig
from megatron_biomed.config.presets import get_preset
from megatron_biomed.convert.dist_writer import StreamingSaveStrategy, TensorGroup
from megatron_biomed.convert.hf_io import HFReader, copy_tokenizer_files, read_config_json
from megatron_biomed.convert.registry import (
    LAYER_PREFIX,
    OUTPUT_LAYER,
    WORD_EMBEDDINGS,
    ConversionError,
    HFAdapter,
    adapter_for_hf_config,
    read_checkpoint_config,
)
from megatron_biomed.models.registry import build_model_chunks
from megatron_biomed.parallel.initialize import single_process_config
from megatron_biomed.tokenizer.extend import init_new_rows_from_pieces, load_new_token_pieces
from megatron_biomed.training.launch import validate_run_config

log = logging.getLogger(__name__)

# Saved beside the checkpoint's iter_* directory: what export needs that ModelConfig does not hold.
HF_CONFIG_FILE = "hf_config.json"
TOKENIZER_DIR = "tokenizer"
# ModelConfig fields that are the architecture (what must match a preset); the rest are training choices.
_ARCHITECTURE = (
    "family", "num_layers", "hidden_size", "num_attention_heads", "kv_heads", "ffn_size", "seq_length",
    "vocab_size", "position_embedding_type", "normalization", "activation", "add_bias_linear",
    "tie_embeddings", "layernorm_epsilon", "scale_attn_by_inverse_layer_idx",
)  # fmt: skip
_ROPE_ONLY = ("rotary_base",)


def architecture_differences(want: ModelConfig, got: ModelConfig, skip: tuple[str, ...] = ()) -> list[str]:
    """``field: a != b`` for each architecture field (but ``skip``) where ``got`` differs from ``want``."""
    fields = _ARCHITECTURE + (_ROPE_ONLY if want.position_embedding_type == "rope" else ())
    return [
        f"{f}: {getattr(want, f)!r} != {getattr(got, f)!r}"
        for f in fields if f not in skip and getattr(want, f) != getattr(got, f)
    ]  # fmt: skip


def experiment_config(
    hf: dict, where: str, preset: str | None, overrides=(), vocab_size: int | None = None
) -> tuple[ExperimentConfig, HFAdapter]:
    """The ExperimentConfig an import records: the preset (default: none) with its model replaced by the one
    ``config.json`` describes (its vocabulary grown to ``vocab_size`` by an extension), after checking they
    are the same architecture; then ``overrides``."""
    adapter = adapter_for_hf_config(hf, where)
    m = adapter.model_config(hf, where)
    if vocab_size is not None:
        m.vocab_size = vocab_size
    if preset:
        cfg = get_preset(preset)
        diffs = architecture_differences(cfg.model, m, skip=adapter.training_choices)
        if diffs:
            raise ConversionError(
                f"{where} is not the architecture of preset {preset!r} (preset != config.json): " + "; ".join(diffs)
            )
        # Keep the preset's training choices (kernels, padding divisor, dropout) around the HF architecture.
        choices = ("kernels", "make_vocab_size_divisible_by", "hidden_dropout", "attention_dropout", "init_method_std")
        for f in choices + adapter.training_choices:
            setattr(m, f, getattr(cfg.model, f))
        cfg.model = m
    else:
        cfg = ExperimentConfig(name=Path(where).parent.name or "hf-import", model=m)
        cfg.model.kernels = "torch"
    apply_overrides(cfg, overrides)
    return validate_run_config(cfg), adapter


def pad_vocab(t: torch.Tensor, rows: int, name: str) -> torch.Tensor:
    """``t`` with zero rows appended up to ``rows`` (Megatron's padded vocabulary)."""
    if t.shape[0] > rows:
        raise ConversionError(f"{name}: {t.shape[0]} vocabulary rows but the model has {rows}")
    if t.shape[0] == rows:
        return t
    return torch.cat([t, t.new_zeros(rows - t.shape[0], *t.shape[1:])])


def extended_vocab_size(vocab_size: int, pieces: dict[int, list[int]] | None, where: str) -> int:
    """Vocabulary after adding the new ids of ``pieces`` ({new id: base piece ids}, tools/extend_vocab.py)."""
    if not pieces:
        return vocab_size
    bad = sorted(i for i, ids in pieces.items() if not ids or max(ids) >= vocab_size)
    if bad:
        raise ConversionError(f"{where}: new tokens {bad[:5]} have pieces outside the model's {vocab_size} ids")
    return max(vocab_size, max(pieces) + 1)


def extend_rows(t: torch.Tensor, pieces: dict[int, list[int]], rows: int) -> torch.Tensor:
    """``t`` grown to ``rows`` rows, each new id's row the mean of its pieces' rows (old rows untouched)."""
    if t.shape[0] < rows:
        t = torch.cat([t, t.new_zeros(rows - t.shape[0], *t.shape[1:])])
    else:
        t = t.clone()
    init_new_rows_from_pieces(t, pieces)
    return t


def fill_model(
    model, m: ModelConfig, adapter: HFAdapter, reader: HFReader, pieces: dict[int, list[int]] | None = None
) -> None:
    """Copy every parameter of the unsharded ``model`` from ``reader`` through ``adapter``; every model
    tensor must be set and every HF tensor used (or be a known buffer). ``pieces``: the vocabulary
    extension (new rows of the embedding and output layer are the mean of their pieces' rows)."""
    params = {k: v for k, v in model.state_dict(keep_vars=True).items() if not k.endswith("_extra_state")}
    done: set[str] = set()

    def put(name: str, value: torch.Tensor) -> None:
        if name not in params:
            raise ConversionError(f"adapter {adapter.family!r} produced {name!r}, which this model does not have")
        target = params[name]
        if name in (WORD_EMBEDDINGS, OUTPUT_LAYER):
            if pieces:
                value = extend_rows(value, pieces, m.vocab_size)
            value = pad_vocab(value, target.shape[0], name)
        if tuple(value.shape) != tuple(target.shape):
            raise ConversionError(f"{name}: converted shape {tuple(value.shape)} != model's {tuple(target.shape)}")
        with torch.no_grad():
            target.copy_(value)
        done.add(name)

    for name, value in adapter.globals_from_hf(m, reader).items():
        put(name, value)
    for i in range(m.num_layers):
        prefix = LAYER_PREFIX.format(i)
        for suffix, value in adapter.layer_from_hf(m, i, reader).items():
            put(prefix + suffix, value)
    missing = sorted(set(params) - done)
    if missing:
        raise ConversionError(f"adapter {adapter.family!r} left model tensors unset: {missing[:8]}")
    check_all_read(reader, adapter, m)


def conversion_groups(model, m: ModelConfig, adapter: HFAdapter, reader: HFReader, pieces=None) -> list:
    """The tensors of ``model`` (built on the meta device) as convert/dist_writer.py groups, each read from
    ``reader`` through ``adapter`` only when it is written: every tensor outside the layers alone (when the
    adapter renames them plainly; else all of them together), then one group per layer. ``pieces``: the
    vocabulary extension (new embedding / output rows the mean of their pieces' rows)."""
    shapes = {
        name: (sharded.data.shape, sharded.data.dtype)
        for name, sharded in model.sharded_state_dict().items()
        if not isinstance(sharded, ShardedObject)
    }

    def ready(name: str, value: torch.Tensor) -> torch.Tensor:
        if name not in shapes:
            raise ConversionError(f"adapter {adapter.family!r} produced {name!r}, which this model does not have")
        shape, dtype = shapes[name]
        if name in (WORD_EMBEDDINGS, OUTPUT_LAYER):
            if pieces:
                value = extend_rows(value, pieces, m.vocab_size)
            value = pad_vocab(value, shape[0], name)
        if tuple(value.shape) != tuple(shape):
            raise ConversionError(f"{name}: converted shape {tuple(value.shape)} != model's {tuple(shape)}")
        return value.to(dtype).contiguous()

    layer_names = [[n for n in shapes if n.startswith(LAYER_PREFIX.format(i))] for i in range(m.num_layers)]
    in_layers = {n for names in layer_names for n in names}
    outside = [n for n in shapes if n not in in_layers]
    groups = []
    renames = adapter.global_names(m)
    if renames is not None:
        unnamed = sorted(set(outside) - set(renames))
        if unnamed:
            raise ConversionError(f"adapter {adapter.family!r} left model tensors unset: {unnamed[:8]}")
        for ours, theirs in renames.items():
            groups.append(TensorGroup([ours], lambda ours=ours, theirs=theirs: {ours: ready(ours, reader(theirs))}))
    else:
        groups.append(TensorGroup(outside, lambda: {
            n: ready(n, t) for n, t in adapter.globals_from_hf(m, reader).items()
        }))  # fmt: skip
    for i, names in enumerate(layer_names):
        prefix = LAYER_PREFIX.format(i)

        def layer(i=i, prefix=prefix):
            return {prefix + k: ready(prefix + k, v) for k, v in adapter.layer_from_hf(m, i, reader).items()}

        groups.append(TensorGroup(names, layer))
    return groups


def check_all_read(reader: HFReader, adapter: HFAdapter, m: ModelConfig) -> None:
    """ConversionError naming the HF tensors that no conversion read (other than known buffers)."""
    unused = [
        n for n in reader.names()
        if n not in reader.read_names and not any(n.endswith(s) for s in adapter.ignored_hf_names)
        and not (m.tie_embeddings and n == "lm_head.weight")
    ]  # fmt: skip
    if unused:
        raise ConversionError(f"{reader.dir}: tensors the {adapter.family} adapter does not convert: {unused[:8]}")


def import_hf(
    hf_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    preset: str | None = None,
    tensor_model_parallel_size: int = 1,
    overrides=(),
    tokenizer: str | os.PathLike | None = None,
    extend_vocab: str | os.PathLike | None = None,
) -> Path:
    """Convert the HF model in ``hf_dir`` to a dist checkpoint under ``out`` (``out/iter_0000000``) whose
    ``run_config.yaml`` is the derived config with ``parallel.tensor_model_parallel_size`` set; its
    tokenizer (from ``tokenizer``, default ``hf_dir``) goes to ``out/tokenizer``. Returns the iteration dir.

    ``extend_vocab``: a directory written by tools/extend_vocab.py (the extended tokenizer and its
    ``new_token_pieces.json``): the vocabulary grows by its new ids, each new embedding / output row the mean
    of its pieces' rows, old rows untouched; the extended tokenizer is the one saved with the checkpoint."""
    hf_dir, out = Path(hf_dir), Path(out)
    where = str(hf_dir / "config.json")
    # A transformers config.json, or one in a family's native format (state-spaces' mamba_ssm checkpoints)
    hf, base_vocab, native = read_checkpoint_config(read_config_json(hf_dir / "config.json"), where)
    if native:
        log.info("%s: %s native config (%s), read as %s", where, native, base_vocab, hf["architectures"])
    pieces = None
    if extend_vocab is not None:
        try:
            pieces = load_new_token_pieces(extend_vocab)
        except (OSError, ValueError) as e:
            raise ConversionError(f"{extend_vocab}: no readable new_token_pieces.json ({e})") from e
        tokenizer = tokenizer or extend_vocab
    vocab = extended_vocab_size(base_vocab, pieces, str(extend_vocab))
    cfg, adapter = experiment_config(hf, where, preset, overrides, vocab_size=vocab)
    cfg.parallel.tensor_model_parallel_size = tensor_model_parallel_size
    one = single_process_config(cfg, padded_vocab=cfg.model.padded_vocab_size(tensor_model_parallel_size))
    with torch.device("meta"):
        model = build_model_chunks(one)[0]
    reader = HFReader(hf_dir)
    inner = getattr(model, "module", model)
    groups = conversion_groups(inner, cfg.model, adapter, reader, pieces)
    out.mkdir(parents=True, exist_ok=True)
    copied = copy_tokenizer_files(tokenizer or hf_dir, out / TOKENIZER_DIR)
    if copied:
        cfg.data.tokenizer = str((out / TOKENIZER_DIR).resolve())
    (out / HF_CONFIG_FILE).write_text(json.dumps(hf | {"vocab_size": cfg.model.vocab_size}, indent=2) + "\n")
    strategy = StreamingSaveStrategy(inner.sharded_state_dict(), groups)
    path = save_weights(out, model, sharded_strategy=strategy, run_config=cfg.to_dict())
    reader.close()
    check_all_read(reader, adapter, cfg.model)
    log.info("imported %s (%s) -> %s, tokenizer files %s", hf_dir, adapter.family, path, copied or "none")
    return path
