"""The index_cache stage: megatron-core's GPTDataset index cache is built once by the pipeline, and a training-side
build with the same values finds it (no file written, none rebuilt)."""

from __future__ import annotations

import os

from megatron_biomed.data.gpt_dataset import TokenInfo, build_gpt_datasets
from megatron_biomed.data.index_cache import SIDECAR
from megatron_biomed.data.jobs import IndexCacheSpec, plan, save_spec
from megatron_biomed.data.jobs.local import run_local
from megatron_biomed.data.jobs.markers import read_marker
from megatron_biomed.tokenizer.bio_tokenizer import load_tokenizer


def test_index_cache_is_prebuilt_for_the_training_run(corpus, tmp_path):
    cache = tmp_path / "cache"
    ic = IndexCacheSpec(samples=(64, 0, 0), seq_length=16, seed=7, split="100,0,0", cache_dir=str(cache))
    spec = corpus.spec(tmp_path / "w", 2, near_dup=False, index_cache=ic)
    save_spec(spec)
    run_local(spec, log=lambda m: None)
    assert plan(spec).get("index_cache").complete
    files = read_marker(spec.work, "index_cache", 0)["cache_files"]
    assert files and all(f.endswith((".npy", "-description.txt")) for f in files)
    before = {p: os.stat(cache / p).st_mtime_ns for p in os.listdir(cache)}
    assert SIDECAR in before  # the data the cache was built from is recorded (preflight's stale-cache check)
    tok = load_tokenizer(spec.tokenizer)
    build_gpt_datasets([str(spec.work / "out_text_document")], seq_length=16, seed=7, num_samples=(64, 0, 0),
                       tokens=TokenInfo(tok.vocab_size, tok.eod_id), split="100,0,0", cache_dir=str(cache))
    assert {p: os.stat(cache / p).st_mtime_ns for p in os.listdir(cache)} == before
