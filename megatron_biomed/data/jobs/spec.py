"""What one pipeline run is: inputs, cleaning settings, tokenizer, number of array tasks, outputs.

Saved as ``<work-dir>/pipeline.json`` by the launcher; every task reads it from there, so a task needs no
arguments but its work directory, stage and index.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from megatron_biomed.data.cleaning.config import CleaningConfig
from megatron_biomed.data.sharding import ShardTask, make_tasks, write_json_atomic

SPEC_NAME = "pipeline.json"
# our choice, following the ">= 10 GB each at scale" (relayed as Megatron-LM's advice; we did not find the
# passage in Megatron-LM's sources; its scripts/merge_datasets/README.md, as indexed, says hundreds of small file
# prefixes run the CPU out of memory and merges them into large files)
GB = 10**9
DEFAULT_TARGET_FILE_SIZE = 10 * GB


@dataclass(frozen=True)
class IndexCacheSpec:
    """The GPTDataset index cache to prebuild; each value must be the training run's (megatron-core names its cache
    files by an MD5 of them). ``samples``: (train_iters x global_batch_size, (train_iters // eval_interval + 1) x
    eval_iters x global_batch_size, eval_iters x global_batch_size), as training/loop.py and lm_task.py ask."""

    samples: tuple[int, int, int]
    seq_length: int
    seed: int = 1234
    split: str = "969,30,1"
    cache_dir: str | None = None
    blend: tuple[str, ...] = ()  # Megatron-LM's "w1 p1 w2 p2 ..." or prefixes; empty: this pipeline's outputs


@dataclass(frozen=True)
class PipelineSpec:
    inputs: tuple[str, ...]
    work_dir: str
    output_prefix: str
    tokenizer: str
    tasks: int = 1
    format: str = "auto"
    skip_bad: bool = False
    cleaning: CleaningConfig = field(default_factory=CleaningConfig)
    json_keys: tuple[str, ...] = ("text",)
    append_eod: bool = False
    tokenizer_backend: str = "auto"
    target_file_size: int = DEFAULT_TARGET_FILE_SIZE
    index_cache: IndexCacheSpec | None = None

    def __post_init__(self) -> None:
        if self.tasks < 1:
            raise ValueError(f"--tasks {self.tasks}: must be >= 1")
        if self.target_file_size < 1:
            raise ValueError(f"--target-file-size {self.target_file_size}: must be >= 1 byte")
        if not self.inputs:
            raise ValueError("--input: no input files")

    @property
    def work(self) -> Path:
        return Path(self.work_dir)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["cleaning"] = self.cleaning.to_dict()
        return d

    def settings_digest(self) -> str:
        """Every setting that changes an output (the work directory does not)."""
        d = self.to_dict()
        d.pop("work_dir")
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()

    def file_tasks(self) -> list[ShardTask]:
        """Input files in the single-process tool's order (file-name order, sharding.make_tasks)."""
        return make_tasks(self.inputs)

    def groups(self) -> list[list[ShardTask]]:
        """The files of each array task: contiguous runs in file order, balanced by bytes (a task may get none)."""
        files = self.file_tasks()
        sizes = [os.path.getsize(t.input) for t in files]
        total = max(sum(sizes), 1)
        out: list[list[ShardTask]] = [[] for _ in range(self.tasks)]
        start = 0
        for t, size in zip(files, sizes):
            # the task whose share of the bytes holds this file's middle byte
            k = min(self.tasks - 1, (2 * start + size) * self.tasks // (2 * total))
            out[k].append(t)
            start += size
        return out


def save_spec(spec: PipelineSpec) -> Path:
    spec.work.mkdir(parents=True, exist_ok=True)
    path = spec.work / SPEC_NAME
    write_json_atomic(path, spec.to_dict())
    return path


def load_spec(work_dir: str | Path) -> PipelineSpec:
    path = Path(work_dir) / SPEC_NAME
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no pipeline here; start it with tools/preprocess_pipeline.py") from None
    cleaning = d.pop("cleaning")
    cleaning["languages"] = tuple(cleaning["languages"])
    cache = d.pop("index_cache")
    spec = PipelineSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()},
                        cleaning=CleaningConfig(**cleaning))
    if cache is not None:
        cache = IndexCacheSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in cache.items()})
        spec = replace(spec, index_cache=cache)
    return spec
