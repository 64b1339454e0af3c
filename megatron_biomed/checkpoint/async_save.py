"""Asynchronous checkpoint saves (``checkpoint.async_save``): training goes on while the shards are written.

megatron-core does the work: ``dist_checkpointing.save(..., async_sharded_save=True)`` plans the save and
returns an AsyncRequest, and its ``AsyncCallsQueue`` runs the writes in a forked process (which sees the
tensors as they were at the fork, whatever training does to them next) and calls the request's finalisation
on every rank once every rank's writes are done. Ours (publish.publish: manifest, fsync, rename, tracker,
pruning) is the last finalisation step, so a run killed while a save is in flight leaves only an
``iter_*.tmp`` directory and the previous checkpoint stays the newest complete one.

At most one save is in flight: starting another first waits for the one before. ``poll`` (a collective, one
small all-reduce while a save is pending) finalises a finished save at a step boundary; ``wait`` finishes it
before the run exits.
"""

from __future__ import annotations

import logging
import time

from megatron.core.dist_checkpointing.strategies.async_utils import AsyncCallsQueue

from megatron_biomed.checkpoint import faults
from megatron_biomed.checkpoint.layout import CheckpointError
from megatron_biomed.checkpoint.publish import PendingSave, save_failure

log = logging.getLogger(__name__)


class AsyncCheckpointer:
    """A run's background saves, at most one in flight (see the module docstring)."""

    def __init__(self):
        # Not persistent: a fresh fork per save sees that moment's tensors with no copy in this process.
        self._queue = AsyncCallsQueue(persistent=False)
        self.pending: PendingSave | None = None
        self._started = 0.0

    def submit(self, pending: PendingSave) -> PendingSave | None:
        """Start writing ``pending`` in the background (a collective), after finishing the save before it
        (returned, if there was one)."""
        previous = None
        if self.pending is not None:
            log.info("checkpoint of iteration %d still being written: waiting for it", self.pending.iteration)
            previous = self.wait()
        self._started = time.perf_counter()
        self._queue.schedule_async_request(pending.request)
        self.pending = pending
        return previous

    def poll(self) -> PendingSave | None:
        """Finalise the save in flight if every rank's writes are done (a collective). Returns it if it was
        finalised now. Raises CheckpointError when its writes failed."""
        if self.pending is None:
            return None
        faults.kill_point(faults.ASYNC_KILL_POINT, self.pending.iteration)
        return self._finalize(blocking=False)

    def wait(self) -> PendingSave | None:
        """Finish and finalise the save in flight, if any (a collective). Raises CheckpointError on failure."""
        if self.pending is None:
            return None
        return self._finalize(blocking=True)

    def _finalize(self, blocking: bool) -> PendingSave | None:
        pending = self.pending
        try:
            done = self._queue.maybe_finalize_async_calls(blocking=blocking)
        except CheckpointError:
            self.pending = None
            raise
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as e:  # torch's CheckpointException (a writer failed) is a BaseException
            self.pending = None
            raise CheckpointError(save_failure(pending, e)) from e
        if not done:
            return None
        self.pending = None
        log.info(
            "checkpoint %s written in the background (%.2f s after it was started)",
            pending.final,
            time.perf_counter() - self._started,
        )
        return pending

    def close(self) -> None:
        """Stop the background writer of a run that is ending on an error, without finalising."""
        self._queue.close(abort=True)
        self.pending = None
