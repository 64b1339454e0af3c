"""Stage ``index_cache`` (one task): build megatron-core's GPTDataset index cache (document, sample and shuffle
indices, ``.npy`` files named by an MD5 of the dataset description) for the blend once, before training, so thousands
of ranks do not build or race on it at start-up. It goes through the same builder training uses
(data/gpt_dataset.build_gpt_datasets), so the cache file names, and the sidecar data/index_cache.py checks, are
exactly the ones the training run will look for, provided the IndexCacheSpec values are the run's, prefixes as the
same strings (megatron-core hashes the prefix as given: megatron/core/datasets/megatron_dataset.py, 0.19.2,
``unique_identifiers["dataset_path"]`` in the MD5 that names the files)."""

from __future__ import annotations

from megatron_biomed.data.gpt_dataset import TokenInfo, build_gpt_datasets
from megatron_biomed.data.index_cache import cache_root, cached_index_files
from megatron_biomed.data.jobs.spec import PipelineSpec
from megatron_biomed.data.jobs.token_stages import outputs
from megatron_biomed.tokenizer.bio_tokenizer import load_tokenizer


def default_blend(spec: PipelineSpec) -> list[str]:
    """This pipeline's outputs: one prefix, or ``tokens prefix tokens prefix ...`` (weights by size)."""
    outs = outputs(spec, spec.json_keys[0])
    if len(outs) == 1:
        return [outs[0]["prefix"]]
    return [x for o in outs for x in (str(o["bytes"]), o["prefix"])]


def index_cache(spec: PipelineSpec, task: int) -> dict:
    ic = spec.index_cache
    blend = list(ic.blend) or default_blend(spec)
    tok = load_tokenizer(spec.tokenizer)
    build_gpt_datasets(blend, seq_length=ic.seq_length, seed=ic.seed, num_samples=tuple(ic.samples),
                       tokens=TokenInfo(vocab_size=tok.vocab_size, eod=tok.eod_id), split=ic.split,
                       cache_dir=ic.cache_dir)
    prefixes = [p for p in blend if not _is_number(p)]
    files = sorted({str(f) for p in prefixes for f in cached_index_files(cache_root(p, ic.cache_dir), p)})
    return {"blend": blend, "cache_files": files}


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False
