"""JSONL -> megatron ``.bin``/``.idx``, in parallel, with bounded memory.

The inputs are cut into ``workers`` contiguous, line-aligned byte ranges (jsonl.plan_chunks).
Each worker streams its range, tokenizes batches of documents into flat numpy arrays
(encode.py) and writes a partial dataset per JSON key; the parts are then merged
in order (merge.py), so the result is the same as one process writing everything. Nothing is
renamed to its final name until every part has succeeded.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

from tqdm import tqdm

from megatron_biomed.data.indexed.encode import DocumentEncoder
from megatron_biomed.data.indexed.format import output_prefix_for
from megatron_biomed.data.indexed.merge import merge_datasets
from megatron_biomed.data.indexed.sentences import load_sentence_splitter
from megatron_biomed.data.indexed.writer import IndexedDatasetWriter
from megatron_biomed.data.jsonl import (
    DEFAULT_MAX_DOCUMENT_BYTES,
    BadRecordError,
    BadRecordReport,
    FileRange,
    JsonlReadConfig,
    expand_inputs,
    iter_records,
    plan_chunks,
)
from megatron_biomed.errors import BiomedError

_PROGRESS_EVERY_S = 0.5


@dataclass
class PreprocessConfig:
    """What tools/preprocess_data.py does; field names match its flags."""

    input: list[str]
    tokenizer: str
    output_prefix: str
    json_keys: tuple[str, ...] = ("text",)
    workers: int = 1
    append_eod: bool = False
    split_sentences: bool = False
    punkt_model: str = "auto"
    keep_newlines: bool = False
    skip_bad: bool = False
    max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES
    tokenizer_backend: str = "auto"
    batch_bytes: int = 4 << 20
    progress: bool = True

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"--workers {self.workers}: must be >= 1")
        if not self.json_keys:
            raise ValueError("--json-keys: give at least one key")

    @property
    def level(self) -> str:
        return "sentence" if self.split_sentences else "document"

    def document_encoder(self, parallel: bool | None) -> DocumentEncoder:
        return DocumentEncoder(self.tokenizer, self.tokenizer_backend, parallel, self.split_sentences,
                               self.punkt_model, self.keep_newlines)

    def read_config(self) -> JsonlReadConfig:
        return JsonlReadConfig(json_keys=tuple(self.json_keys),
                               max_document_bytes=self.max_document_bytes, skip_bad=self.skip_bad)


@dataclass
class PreprocessStats:
    """Counts for the final report (summed over workers)."""

    documents: int = 0
    tokens: int = 0
    input_bytes: int = 0
    seconds: float = 0.0
    backend: str = ""
    bad: BadRecordReport = field(default_factory=BadRecordReport)
    outputs: list[str] = field(default_factory=list)

    def add(self, other: PreprocessStats) -> None:
        self.documents += other.documents
        self.tokens += other.tokens
        self.input_bytes += other.input_bytes
        self.backend = self.backend or other.backend
        self.bad.merge(other.bad)

    def summary(self) -> str:
        s = max(self.seconds, 1e-9)
        return (f"{self.documents:,} docs, {self.tokens:,} tokens, {self.input_bytes / 1e6:,.1f} MB "
                f"in {self.seconds:.1f}s ({self.documents / s:,.0f} docs/s, "
                f"{self.input_bytes / 1e6 / s:,.1f} MB/s, {self.tokens / s:,.0f} tokens/s; "
                f"backend {self.backend}); {self.bad.summary()}")


# ---------------------------------------------------------------------------------------------
# one worker: a contiguous list of byte ranges -> one partial dataset per key
# ---------------------------------------------------------------------------------------------
def _process_ranges(cfg: PreprocessConfig, ranges: list[FileRange], part_prefix: str,
                    encoder: DocumentEncoder, on_progress) -> PreprocessStats:
    """Tokenize ``ranges`` into ``<part_prefix>_<key>`` datasets (finalized only on success)."""
    stats = PreprocessStats(backend=encoder.backend)
    read_cfg = cfg.read_config()
    writers = {k: IndexedDatasetWriter(f"{part_prefix}_{k}", encoder.dtype) for k in cfg.json_keys}
    batch: list[list[str]] = []
    batch_bytes = 0
    last = time.time()
    pending = [0, 0, 0]  # docs, bytes, tokens not yet reported

    def flush() -> None:
        nonlocal batch, batch_bytes
        if not batch:
            return
        for j, key in enumerate(cfg.json_keys):
            ids, lens, per_doc = encoder.encode_documents([b[j] for b in batch], cfg.append_eod)
            writers[key].add_documents(ids, lens, per_doc)
            pending[2] += int(ids.size)
            stats.tokens += int(ids.size)
        pending[0] += len(batch)
        pending[1] += batch_bytes
        stats.documents += len(batch)
        stats.input_bytes += batch_bytes
        batch, batch_bytes = [], 0

    try:
        for rng in ranges:
            for texts, nbytes in iter_records(rng, read_cfg, stats.bad, first_line=1 if rng.start == 0 else None):
                batch.append(texts)
                batch_bytes += nbytes
                if batch_bytes >= cfg.batch_bytes:
                    flush()
                    if time.time() - last > _PROGRESS_EVERY_S:
                        on_progress(*pending)
                        pending[:] = [0, 0, 0]
                        last = time.time()
        flush()
        on_progress(*pending)
        for w in writers.values():
            w.finalize()
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    return stats


def _worker_main(cfg: PreprocessConfig, index: int, ranges: list[FileRange], part_prefix: str,
                 n_workers: int, q, encoder: DocumentEncoder | None = None) -> None:
    """Entry point of a worker process: report progress, then ("done"|"error", ...) on ``q``.
    ``encoder`` is inherited from the parent when forked; spawned workers load their own."""
    if n_workers >= (os.cpu_count() or 1):
        # one process per core already: keep HF tokenizers from adding its own threads
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        if encoder is None:
            encoder = cfg.document_encoder(parallel=False)
        stats = _process_ranges(cfg, ranges, part_prefix, encoder,
                                lambda d, b, t: q.put(("progress", index, d, b, t)))
        q.put(("done", index, stats))
    except BadRecordError as e:
        q.put(("error", index, str(e)))
    except BaseException as e:  # noqa: BLE001 - report anything to the parent, with its type
        q.put(("error", index, f"worker {index}: {type(e).__name__}: {e}"))


# ---------------------------------------------------------------------------------------------
# the whole run
# ---------------------------------------------------------------------------------------------
class PreprocessError(BiomedError, RuntimeError):
    """A run stopped; no final output was written."""


def _progress_bar(cfg: PreprocessConfig, total_bytes: int):
    return tqdm(total=total_bytes, unit="B", unit_scale=True, unit_divisor=1000, smoothing=0.1,
                desc="preprocess", disable=not cfg.progress, file=sys.stderr, mininterval=0.5)


class _Progress:
    def __init__(self, cfg: PreprocessConfig, total_bytes: int) -> None:
        self.bar = _progress_bar(cfg, total_bytes)
        self.t0 = time.time()
        self.docs = self.tokens = self.nbytes = 0

    def update(self, docs: int, nbytes: int, tokens: int) -> None:
        self.docs += docs
        self.tokens += tokens
        self.nbytes += nbytes
        dt = max(time.time() - self.t0, 1e-9)
        self.bar.set_postfix_str(f"{self.docs / dt:,.0f} docs/s, {self.nbytes / 1e6 / dt:,.1f} MB/s, "
                                 f"{self.tokens / dt:,.0f} tokens/s", refresh=False)
        self.bar.update(nbytes)

    def close(self) -> None:
        self.bar.close()


def preprocess(cfg: PreprocessConfig) -> PreprocessStats:
    """Run the whole conversion; raise PreprocessError (nothing written) on a bad record when
    ``skip_bad`` is off, naming the file, line and problem."""
    t0 = time.time()
    files = expand_inputs(cfg.input)
    if cfg.split_sentences:  # train/cache the Punkt model once here, not in every worker
        load_sentence_splitter(cfg.punkt_model, keep_newlines=cfg.keep_newlines)
    chunks = [c for c in plan_chunks(files, cfg.workers) if c]
    total = sum(r.nbytes for c in chunks for r in c)
    out_dir = os.path.dirname(os.path.abspath(cfg.output_prefix))
    os.makedirs(out_dir, exist_ok=True)
    work = tempfile.mkdtemp(prefix=f".{os.path.basename(cfg.output_prefix)}.parts-", dir=out_dir)
    parts = [os.path.join(work, f"part{i:05d}") for i in range(max(len(chunks), 1))]
    progress = None
    stats = PreprocessStats()
    try:
        # workers first: forking is only safe before the progress bar starts its monitor thread
        workers = _start_workers(cfg, chunks, parts) if len(chunks) > 1 else None
        progress = _Progress(cfg, total)
        if workers is None:
            encoder = cfg.document_encoder(parallel=None)
            stats.add(_process_ranges(cfg, chunks[0] if chunks else [], parts[0], encoder,
                                      progress.update))
        else:
            for s in _run_workers(*workers, progress):
                stats.add(s)
        progress.close()
        finals = [output_prefix_for(cfg.output_prefix, k, cfg.level) for k in cfg.json_keys]
        # merge each key to temporary names, then rename all pairs at the very end
        staged = []
        for key, final in zip(cfg.json_keys, finals):
            tmp = os.path.join(work, f"merged_{key}")
            if len(parts) == 1:
                tmp = f"{parts[0]}_{key}"
            else:
                merge_datasets([f"{p}_{key}" for p in parts], tmp)
            staged.append((tmp, final))
        for tmp, final in staged:
            os.replace(tmp + ".bin", final + ".bin")
        for tmp, final in staged:
            os.replace(tmp + ".idx", final + ".idx")
        stats.outputs = finals
    except BadRecordError as e:
        raise PreprocessError(str(e)) from None
    finally:
        if progress is not None:
            progress.close()
        shutil.rmtree(work, ignore_errors=True)
    stats.seconds = time.time() - t0
    return stats


def _start_method() -> str:
    """fork (no interpreter start-up; modules and tokenizer inherited) while no other Python thread
    runs, as in the CLI; otherwise spawn, which is always safe. Native pools are fork-aware:
    OpenBLAS re-creates its threads, and gigatoken and tokenizers stop using a pool that was
    started before the fork."""
    if "fork" in mp.get_all_start_methods() and threading.active_count() == 1:
        return "fork"
    return "spawn"


def _start_workers(cfg: PreprocessConfig, chunks, parts):
    method = _start_method()
    ctx = mp.get_context(method)
    # forked workers share the parent's loaded tokenizer (loading it costs more than a small chunk)
    encoder = cfg.document_encoder(parallel=False) if method == "fork" else None
    q = ctx.Queue()
    procs = [ctx.Process(target=_worker_main, args=(cfg, i, c, parts[i], len(chunks), q, encoder),
                         daemon=True)
             for i, c in enumerate(chunks)]
    for p in procs:
        p.start()
    return procs, q


def _run_workers(procs, q, progress: _Progress) -> list[PreprocessStats]:
    results: dict[int, PreprocessStats] = {}
    try:
        while len(results) < len(procs):
            try:
                msg = q.get(timeout=1.0)
            except queue.Empty:
                dead = [i for i, p in enumerate(procs) if not p.is_alive() and i not in results
                        and p.exitcode not in (0, None)]
                if dead:
                    raise PreprocessError(f"worker {dead[0]} died (exit code {procs[dead[0]].exitcode})")
                continue
            if msg[0] == "progress":
                progress.update(*msg[2:])
            elif msg[0] == "done":
                results[msg[1]] = msg[2]
            else:
                raise PreprocessError(msg[2])
    finally:
        for p in procs:
            if p.is_alive() and len(results) < len(procs):
                p.terminate()
        for p in procs:
            p.join()
    return [results[i] for i in range(len(procs))]
