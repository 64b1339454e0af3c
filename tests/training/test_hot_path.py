"""The step loop's host syncs: one read per step (loss finite + preemption request), the window's scalars read
once at the log interval, every step's record still written; the prefetched batches are the iterator's."""

from __future__ import annotations

import json
import threading
from collections import Counter

import pytest
import torch
from host_syncs import HostSyncs

from megatron_biomed.data.gpt_dataset import MicroBatchIterator
from megatron_biomed.data.prefetch import Prefetcher
from megatron_biomed.training import loop

OURS = {"loop.py", "metrics.py", "signals.py", "prefetch.py", "lm_task.py", "task.py", "gpt_dataset.py"}
# Reads megatron-core (and torch's AdamW under it) makes on CPU, none of them the loop's: the grad norm where
# Transformer Engine's multi-tensor kernels are missing (clip_grads.py get_grad_norm_fp32, utils.py's l2-norm
# fallback), torch.optim.AdamW's step counts (host tensors when the optimizer is not fused), and a flag read once
# and cached (optimizer.py has_grad_norm_group).
MEGATRON_CORE_CPU_READS = {"clip_grads.py:get_grad_norm_fp32", "utils.py:local_multi_tensor_l2_norm",
                           "optimizer.py:step_with_ready_grads", "optimizer.py:has_grad_norm_group"}  # fmt: skip


def _trainer(tmp_path, **sets):
    from megatron_biomed.config.loading import load_config
    from megatron_biomed.parallel.env import DistEnv, find_free_port
    from megatron_biomed.parallel.initialize import initialize_parallel
    from megatron_biomed.training.pretrain import token_info

    base = {"data.mock": "true", "train.train_iters": 7, "train.global_batch_size": 2, "train.micro_batch_size": 1,
            "train.eval_iters": 0, "train.precision": "fp32", "logging.log_interval": 3,
            "logging.metrics_file": tmp_path / "m.jsonl", "model.num_layers": 1, "model.seq_length": 32}  # fmt: skip
    cfg = load_config("tiny-biomedlm", overrides=[f"{k}={v}" for k, v in {**base, **sets}.items()])
    ctx = initialize_parallel(cfg, DistEnv(0, 1, 0, "127.0.0.1", find_free_port(), "single"))
    return loop.Trainer(cfg, ctx, token_info(cfg))


def _phased(trainer, counter: HostSyncs):
    """Label each sync with the step it happened in, and whether inside the log window's flush."""
    step, flush = trainer.train_step, loop._LogWindow.flush

    def train_step(data_iter, iteration, **kw):
        counter.phase = f"step {iteration}"
        return step(data_iter, iteration, **kw)

    def flushing(window):
        before, counter.phase = counter.phase, counter.phase + " flush"
        try:
            return flush(window)
        finally:
            counter.phase = before

    trainer.train_step = train_step
    return flushing


def test_one_host_read_per_step_and_one_log_read_per_window(tmp_path, monkeypatch):
    from megatron_biomed.parallel.initialize import shutdown_parallel

    trainer = _trainer(tmp_path, **{"train.inject_nonfinite_loss_at": "[5]"})
    try:
        counter = HostSyncs()
        monkeypatch.setattr(loop._LogWindow, "flush", _phased(trainer, counter))
        with counter:
            summary = trainer.train()
    finally:
        shutdown_parallel()
    assert summary["iteration"] == 7
    ours = Counter(phase for phase, site in counter.events if site.split(":")[0] in OURS)
    for it in range(1, 8):
        # The step's one read: the loss is finite and nobody asked to stop (loop.py _step_decisions); on the
        # skipped step 5 the warning prints the loss (one more read, only then).
        assert ours[f"step {it}"] == (2 if it == 5 else 1), counter.events
        # The window's one read, at the log iterations (log_interval 3, the first, the last).
        assert ours[f"step {it} flush"] == (1 if it in (1, 3, 6, 7) else 0), counter.events
    assert Counter(site for _, site in counter.events)["loop.py:_step_decisions"] == 7
    theirs = {site for _, site in counter.events if site.split(":")[0] not in OURS}
    assert theirs <= MEGATRON_CORE_CPU_READS, theirs
    records = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records] == list(range(1, 8))  # every step's record, in order
    assert [r["skipped"] for r in records] == [0, 0, 0, 0, 1, 1, 1]
    assert records[4]["loss"] != records[4]["loss"] and all(r["loss"] > 0 for i, r in enumerate(records) if i != 4)
    assert records[5]["lr"] == records[4]["lr"]  # the skipped step did not advance the schedule
    assert all(r["step_time_s"] > 0 and r["tokens_per_s"] > 0 for r in records)


class _Numbered:
    """Batches ``{"x": [i, i]}`` for i < n, then a ValueError with ``fail`` (if given) or the end."""

    def __init__(self, n: int, fail: str | None = None):
        self.n, self.i, self.fail = n, 0, fail

    def __iter__(self):
        return self

    def __next__(self):
        if self.i == self.n:
            if self.fail:
                raise ValueError(self.fail)
            raise StopIteration
        self.i += 1
        return {"x": torch.full((2,), self.i - 1), "meta": self.i - 1}


def _prefetch_threads():
    return [t for t in threading.enumerate() if t.name == "batch-prefetch" and t.is_alive()]


def test_prefetched_batches_are_the_iterators_in_order():
    gen = torch.Generator().manual_seed(3)
    ds = [{"tokens": torch.randint(0, 64, (16,), generator=gen), "loss_mask": torch.rand(16, generator=gen)}
          for _ in range(12)]  # fmt: skip
    plain = MicroBatchIterator(ds, 2, dp_rank=1, dp_size=2, consumed_samples=4)
    fetched = Prefetcher(MicroBatchIterator(ds, 2, dp_rank=1, dp_size=2, consumed_samples=4), "cpu", depth=2)
    for _ in range(9):  # past the dataset's end: MicroBatchIterator wraps around
        want, got = next(plain), next(fetched)
        assert want.keys() == got.keys()
        for k in want:
            assert torch.equal(want[k], got[k]) and got[k].device.type == "cpu"
    fetched.close()
    assert not _prefetch_threads()


def test_prefetcher_ends_and_raises_the_sources_error():
    assert [b["meta"] for b in Prefetcher(_Numbered(5), "cpu", depth=3)] == [0, 1, 2, 3, 4]
    failing = Prefetcher(_Numbered(2, fail="shard 7 is truncated"), "cpu")
    assert [next(failing)["meta"], next(failing)["meta"]] == [0, 1]
    with pytest.raises(ValueError, match="^shard 7 is truncated$"):
        next(failing)
    with pytest.raises(StopIteration):
        next(failing)
    with pytest.raises(ValueError, match="depth=0"):
        Prefetcher(_Numbered(1), "cpu", depth=0)
    dropped = Prefetcher(_Numbered(10**6), "cpu", depth=1)  # a thread blocked on a full queue
    next(dropped)
    del dropped  # stops its thread (nothing else holds the prefetcher: no cycle, no gc needed)
    for t in _prefetch_threads():
        t.join(timeout=2)
    assert not _prefetch_threads()


def test_step_timer_reads_cuda_events_with_one_synchronisation(monkeypatch):
    """On CUDA a step's time is its events' elapsed time, read with one synchronize (on the newest event) per
    window; on CPU the host clock. (No GPU here: events that keep a fake device clock.)"""
    from megatron_biomed.training.metrics import StepTimer

    clock, synced = [0.0], []

    class FakeEvent:
        def __init__(self, enable_timing=False):
            assert enable_timing

        def record(self):
            self.at = clock[0]

        def synchronize(self):
            synced.append(self)

        def elapsed_time(self, end):  # milliseconds, as CUDA's
            return (end.at - self.at) * 1e3

    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    timer = StepTimer(torch.device("cuda", 0))
    for seconds in (0.5, 2.0, 0.25):
        timer.start()
        clock[0] += seconds
        timer.stop()
        clock[0] += 7.0  # between steps (logging, saves): not a step's time
    assert timer.collect() == [0.5, 2.0, 0.25] and len(synced) == 1 and synced[0].at == clock[0] - 7.0
    assert timer.collect() == [] and len(synced) == 1
    cpu = StepTimer(torch.device("cpu"))
    cpu.start()
    cpu.stop()
    (elapsed,) = cpu.collect()
    assert 0 <= elapsed < 1
    with pytest.raises(RuntimeError, match="without start"):
        cpu.stop()


def test_peak_memory_is_reported_from_the_allocator_on_gpu(monkeypatch):
    """On a GPU each metrics record carries the allocator's peak (a host-side counter); on CPU none."""
    from megatron_biomed.training import metrics

    assert metrics.peak_memory_gib() is None or torch.cuda.is_available()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *a, **k: 3 * 2**30)
    assert metrics.peak_memory_gib() == 3.0
    s = {"loss": 1.0, "lr": 1e-4, "grad_norm": 0.5, "tokens_per_s": 10.0, "tflops_per_rank": 0.1, "mfu": None,
         "peak_memory_gib": metrics.peak_memory_gib()}  # fmt: skip
    assert "peak memory 3.00 GiB" in metrics.format_train_line(1, 2, s)
