"""A model with a checkpoint's weights, in this one process, whatever layout the checkpoint was saved at."""

from __future__ import annotations

from megatron.core import dist_checkpointing

from megatron_biomed.checkpoint import checkpoint_path, load_checkpoint, run_experiment_config
from megatron_biomed.config.experiment import ExperimentConfig
from megatron_biomed.models.registry import build_model_chunks
from megatron_biomed.parallel.initialize import single_process_config
from megatron_biomed.parallel.layout import LayoutError


def saved_padded_vocab(path) -> int:
    """Rows of the word embedding in the dist checkpoint at ``path`` (the vocabulary padded as saved)."""
    meta = dist_checkpointing.load_tensors_metadata(str(path))
    return int(meta["embedding.word_embeddings.weight"].global_shape[0])


def load_model(checkpoint, cfg: ExperimentConfig | None = None):
    """(model, cfg): the unsharded model (TP = PP = 1, on the default device) with the weights of the latest
    complete checkpoint under ``checkpoint`` (or that ``iter_*`` directory); ``cfg`` defaults to the
    checkpoint's ``run_config.yaml``. The returned cfg is the one the model was built with."""
    path = checkpoint_path(checkpoint)
    if cfg is None:
        _, cfg = run_experiment_config(path)
    one = single_process_config(cfg, saved_padded_vocab(path))
    return load_model_chunks(one, path)[0], one


def fit_vocab_padding(cfg: ExperimentConfig, padded_vocab: int) -> None:
    """Set ``make_vocab_size_divisible_by`` so that ``cfg``'s layout pads the vocabulary to the checkpoint's
    ``padded_vocab`` rows (a checkpoint saved at TP 2 loads at TP 1 or 2)."""
    tp = cfg.parallel.tensor_model_parallel_size
    if padded_vocab % tp:
        raise LayoutError(
            f"the checkpoint's {padded_vocab} vocabulary rows do not split over tensor_model_parallel_size={tp}"
        )
    cfg.model.make_vocab_size_divisible_by = padded_vocab // tp


def load_model_chunks(cfg: ExperimentConfig, checkpoint, weights_from: str = "model") -> list:
    """This rank's model chunks for ``cfg``'s layout (parallel state already started), with the weights of
    the checkpoint under ``checkpoint`` (``weights_from="ema"``: their moving average); the vocabulary padding is
    fitted to the checkpoint's."""
    path = checkpoint_path(checkpoint)
    fit_vocab_padding(cfg, saved_padded_vocab(path))
    chunks = build_model_chunks(cfg)
    load_checkpoint(path, chunks, weights_only=True, weights_from=weights_from)
    for c in chunks:
        c.eval()
    return chunks
