"""A model with a checkpoint's weights, in this one process, whatever layout the checkpoint was saved at."""

from __future__ import annotations

import copy
import os

from megatron_biomed.config.experiment import ExperimentConfig


def single_process_config(cfg: ExperimentConfig, padded_vocab: int | None = None) -> ExperimentConfig:
    """``cfg`` at TP = PP = 1 (megatron-core's parallel state started for one process), with the vocabulary
    padded to ``padded_vocab`` rows when given (a checkpoint saved at TP > 1 pads to a larger multiple)."""
    from megatron_biomed.parallel.env import DistEnv, find_free_port
    from megatron_biomed.parallel.initialize import initialize_parallel

    one = copy.deepcopy(cfg)
    if padded_vocab is not None:
        one.model.make_vocab_size_divisible_by = padded_vocab  # ceil(vocab / rows) * rows == rows
    p = one.parallel
    p.tensor_model_parallel_size = p.pipeline_model_parallel_size = 1
    p.virtual_pipeline_model_parallel_size = None
    p.sequence_parallel = False
    p.use_distributed_optimizer = False
    one.train.global_batch_size = one.train.micro_batch_size
    port = int(os.environ.get("MASTER_PORT") or find_free_port())
    initialize_parallel(one, DistEnv(0, 1, 0, "127.0.0.1", port, "single"))
    return one


def saved_padded_vocab(path) -> int:
    """Rows of the word embedding in the dist checkpoint at ``path`` (the vocabulary padded as saved)."""
    from megatron.core import dist_checkpointing

    meta = dist_checkpointing.load_tensors_metadata(str(path))
    return int(meta["embedding.word_embeddings.weight"].global_shape[0])


def load_model(checkpoint, cfg: ExperimentConfig | None = None):
    """(model, cfg): the unsharded model (TP = PP = 1, on the default device) with the weights of the latest
    complete checkpoint under ``checkpoint`` (or that ``iter_*`` directory); ``cfg`` defaults to the
    checkpoint's ``run_config.yaml``. The returned cfg is the one the model was built with."""
    from megatron_biomed.models.registry import build_model_chunks
    from megatron_biomed.training.checkpointing import checkpoint_path, load_checkpoint

    path = checkpoint_path(checkpoint)
    if cfg is None:
        from megatron_biomed.convert.exporter import run_experiment_config

        _, cfg = run_experiment_config(path)
    one = single_process_config(cfg, saved_padded_vocab(path))
    model = build_model_chunks(one)[0]
    load_checkpoint(path, [model], weights_only=True)
    model.eval()
    return model, one


def fit_vocab_padding(cfg: ExperimentConfig, padded_vocab: int) -> None:
    """Set ``make_vocab_size_divisible_by`` so that ``cfg``'s layout pads the vocabulary to the checkpoint's
    ``padded_vocab`` rows (a checkpoint saved at TP 2 loads at TP 1 or 2)."""
    tp = cfg.parallel.tensor_model_parallel_size
    if padded_vocab % tp:
        raise ValueError(
            f"the checkpoint's {padded_vocab} vocabulary rows do not split over tensor_model_parallel_size={tp}"
        )
    cfg.model.make_vocab_size_divisible_by = padded_vocab // tp


def load_model_chunks(cfg: ExperimentConfig, checkpoint) -> list:
    """This rank's model chunks for ``cfg``'s layout (parallel state already started), with the weights of
    the checkpoint under ``checkpoint``; the vocabulary padding is fitted to the checkpoint's."""
    from megatron_biomed.models.registry import build_model_chunks
    from megatron_biomed.training.checkpointing import checkpoint_path, load_checkpoint

    path = checkpoint_path(checkpoint)
    fit_vocab_padding(cfg, saved_padded_vocab(path))
    chunks = build_model_chunks(cfg)
    load_checkpoint(path, chunks, weights_only=True)
    for c in chunks:
        c.eval()
    return chunks
