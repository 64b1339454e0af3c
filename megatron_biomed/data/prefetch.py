"""Micro-batches made ahead of the step that needs them: :class:`Prefetcher`.

A background thread pulls batches (dicts of CPU tensors) from the wrapped iterator while the model computes,
pinning them when the model is on a CUDA device; the batch a step takes was copied to the device with
``non_blocking`` on a side stream as the previous batch was handed out, so the host never waits for a pageable
copy and the copy overlaps the previous step's kernels. On CPU the same path runs with plain tensors (no pinning,
no stream). The order is the wrapped iterator's; an error raised by it is raised again, unchanged, by the
``next()`` that would have returned that batch.
"""

from __future__ import annotations

import queue
import threading
import weakref
from typing import Iterator

import torch

_END = object()


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


def _produce(source: Iterator, out: queue.Queue, stop: threading.Event, pin_for: torch.device | None) -> None:
    """The thread's body: ``source``'s batches into ``out`` (pinned for the CUDA device ``pin_for``) until it
    ends, fails or ``stop`` is set. Holds no reference to the Prefetcher, so dropping it stops the thread."""
    pin = pin_for is not None
    if pin:
        # A new thread's current device is GPU 0: pinning there would open a CUDA context on GPU 0 for every rank
        # of the node (as PyTorch's DataLoader pin thread, set this rank's device first).
        try:
            torch.cuda.set_device(pin_for)
        except BaseException as e:  # the consumer waits on the queue: it gets the error instead of hanging
            out.put(_Failure(e))
            return
    while not stop.is_set():
        try:
            item = next(source)
            if pin:
                item = {k: v.pin_memory() if isinstance(v, torch.Tensor) else v for k, v in item.items()}
        except StopIteration:
            item = _END
        except BaseException as e:  # handed to the consumer as it is
            item = _Failure(e)
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                break
            except queue.Full:
                continue
        if item is _END or isinstance(item, _Failure):
            return


def _shutdown(stop: threading.Event, out: queue.Queue, thread: threading.Thread) -> None:
    stop.set()
    try:  # free the thread from a put into a full queue now, not at its next timeout
        while True:
            out.get_nowait()
    except queue.Empty:
        pass
    if thread is not threading.current_thread():
        thread.join(timeout=5)


class Prefetcher:
    """Iterate ``source`` (dict batches) with ``depth`` batches made ahead on a thread and, on CUDA, the next
    one already on ``device``. ``close()`` (or dropping the object) stops the thread."""

    def __init__(self, source: Iterator[dict], device: torch.device | str, depth: int = 2):
        if depth < 1:
            raise ValueError(f"Prefetcher: depth={depth} must be >= 1")
        self.source = source
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=_produce,
            args=(iter(source), self._queue, self._stop, self.device if self.cuda else None),
            name="batch-prefetch",
            daemon=True,
        )
        self._thread.start()
        self._finalizer = weakref.finalize(self, _shutdown, self._stop, self._queue, self._thread)
        self._stream = torch.cuda.Stream(device=self.device) if self.cuda else None
        self._staged = None  # (batch on the device, the copy's event) or an end/failure item
        self._done = False

    def __iter__(self) -> Prefetcher:
        return self

    def _take(self, block: bool = True):
        """The thread's next item, on the device (copy issued, not waited for); None if ``block`` is False and
        the thread has not made it yet."""
        try:
            item = self._queue.get(block=block)
        except queue.Empty:
            return None
        if item is _END or isinstance(item, _Failure):
            return item
        if not self.cuda:
            return {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in item.items()}, None
        with torch.cuda.stream(self._stream):
            batch = {k: v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v
                     for k, v in item.items()}  # fmt: skip
            event = torch.cuda.Event()
            event.record(self._stream)
        return batch, event

    def __next__(self) -> dict:
        if self._done:
            raise StopIteration
        staged = self._staged if self._staged is not None else self._take()
        self._staged = None
        if staged is _END or isinstance(staged, _Failure):
            self.close()
            if staged is _END:
                raise StopIteration
            raise staged.error
        batch, event = staged
        if event is not None:
            stream = torch.cuda.current_stream(self.device)
            stream.wait_event(event)
            for v in batch.values():
                if isinstance(v, torch.Tensor):
                    v.record_stream(stream)  # made on the side stream, used on this one
        self._staged = self._take(block=False)  # if made already: its copy runs while this one is computed on
        return batch

    def close(self) -> None:
        """Stop the thread (the batches made ahead are dropped)."""
        self._done = True
        self._finalizer()
