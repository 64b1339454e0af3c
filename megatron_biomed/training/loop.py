"""The training loop: megatron-core model chunks, DDP, optimizer and 1F1B / interleaved schedules.

One ``Trainer`` per process. Build it from an ExperimentConfig and a :class:`~megatron_biomed.training.task.Task`
(pretraining by default) after ``initialize_parallel``; ``train()`` runs to ``train.train_iters`` with logging,
validation, checkpoints, preemption and non-finite-loss handling. The task decides the model, data, forward
step, loss and metrics; nothing here knows which objective is trained.

The host waits for the device once per step, and only for what must be decided before the optimizer step: one
two-value read (is the global loss finite -- else the step is skipped --, and did any rank get a preemption
signal), both carried by the step's one metrics all-reduce. Losses, metrics and grad norms stay on the device
until the log interval, when one read fetches the window's (metrics.ScalarWindow) and the step times are taken
from CUDA events (metrics.StepTimer). megatron-core's optimizer step adds its own reads where it has them (the
fp16 loss scaler's found-inf flag; the grad norm without Transformer Engine's multi-tensor kernels).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist
from megatron.core import parallel_state as ps
from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig, finalize_model_grads
from megatron.core.pipeline_parallel import get_forward_backward_func

from megatron_biomed.checkpoint import (
    AsyncCheckpointer,
    CheckpointError,
    TrainState,
    discard_failed_save,
    finish_save,
    iteration_dir,
    latest_iteration,
    load_checkpoint,
    start_save,
)
from megatron_biomed.config.experiment import ExperimentConfig
from megatron_biomed.data.gpt_dataset import MicroBatchIterator, TokenInfo
from megatron_biomed.data.prefetch import Prefetcher
from megatron_biomed.errors import BiomedError
from megatron_biomed.models.common import transformer_config
from megatron_biomed.models.registry import flops_per_token
from megatron_biomed.parallel.initialize import ParallelContext
from megatron_biomed.training import faults
from megatron_biomed.training.ema import EMA_KEY, WeightEMA
from megatron_biomed.training.lm_task import LanguageModelTask
from megatron_biomed.training.metrics import (
    MetricsWriter,
    ScalarWindow,
    StepTimer,
    format_train_line,
    mfu,
    peak_memory_gib,
)
from megatron_biomed.training.optimizer import build_optimizer, ddp_knobs
from megatron_biomed.training.signals import PreemptionHandler
from megatron_biomed.training.task import Task

log = logging.getLogger("megatron_biomed")


class TrainingStopped(BiomedError, RuntimeError):
    """Training cannot go on (e.g. too many consecutive non-finite losses)."""


@dataclass
class StepResult:
    """One training step. ``loss``, ``grad_norm`` and the ``metrics`` values may be device tensors (0-d): read
    them at the log interval, not every step. ``skipped`` (non-finite global loss: no update) and ``stop`` (a rank
    got a preemption signal) are host booleans, the same on every rank."""

    loss: torch.Tensor | float
    grad_norm: torch.Tensor | float
    lr: float
    skipped: bool
    metrics: dict
    stop: bool = False


def _with_injected_nonfinite(forward_step_func):
    """Fault injection for tests: the output reaching the loss function becomes NaN."""

    def step(data_iterator, model):
        output, loss_func = forward_step_func(data_iterator, model)
        return output, lambda out: loss_func(out * float("nan"))

    return step


class Trainer:
    def __init__(
        self,
        cfg: ExperimentConfig,
        ctx: ParallelContext,
        tokens: TokenInfo,
        task: Task | None = None,
        forward_only: bool = False,
    ):
        """``forward_only``: for evaluation; the model chunks without DDP, optimizer or training data."""
        if task is None:
            task = LanguageModelTask(cfg, tokens)
        self.cfg, self.ctx, self.task = cfg, ctx, task
        t = cfg.train
        self.num_microbatches = t.global_batch_size // (t.micro_batch_size * ctx.dp)
        self.tconfig = transformer_config(cfg)
        task.configure(self.tconfig)
        chunks = task.build_model(cfg, self.tconfig)
        self.dp_rank = ps.get_data_parallel_rank()
        self.is_last_stage = ps.is_pipeline_last_stage(ignore_virtual=True)
        self.rank0 = ctx.env.rank == 0
        self.state = TrainState()
        self.async_saver = None  # AsyncCheckpointer, made at the first background save
        self.failed_save: str | None = None  # the message of the newest save that failed (on_save_error continue)
        self._last_eval: tuple | None = None
        self._extra_eval: dict | None = None
        self.tokens_info = tokens
        self.train_ds = self.valid_ds = None
        self.ema = None  # WeightEMA with optimizer.ema_decay
        if forward_only:
            self.model, self.optimizer, self.scheduler = chunks, None, None
            self.writer = MetricsWriter(cfg, enabled=False)
            return
        self.writer = MetricsWriter(cfg, enabled=self.rank0)
        if cfg.optimizer.ema_decay > 0:
            self.ema = WeightEMA(lambda: task.build_model(cfg, self.tconfig), cfg.optimizer.ema_decay)
        ddp_config = DistributedDataParallelConfig(
            **ddp_knobs(cfg),
            overlap_grad_reduce=cfg.parallel.overlap_grad_reduce,
            use_distributed_optimizer=cfg.parallel.use_distributed_optimizer,
        )
        self.model = [
            DistributedDataParallel(config=self.tconfig, ddp_config=ddp_config, module=c, disable_bucketing=i > 0)
            for i, c in enumerate(chunks)
        ]
        self.optimizer, self.scheduler = build_optimizer(cfg, self.model)
        self.tconfig.finalize_model_grads_func = finalize_model_grads
        self.tconfig.grad_scale_func = self.optimizer.scale_loss
        nosync = [m.no_sync for m in self.model]
        self.tconfig.no_sync_func = nosync[0] if len(nosync) == 1 else nosync
        if cfg.parallel.overlap_grad_reduce:
            syncs = [m.start_grad_sync for m in self.model]
            self.tconfig.grad_sync_func = syncs[0] if len(syncs) == 1 else syncs
        self._build_data()

    # ---- data ----------------------------------------------------------------------------------------
    def _build_data(self) -> None:
        t = self.cfg.train
        n_evals = (t.train_iters // t.eval_interval + 1) if t.eval_interval else 1
        num_samples = (t.train_iters * t.global_batch_size, n_evals * t.eval_iters * t.global_batch_size)
        try:
            self.train_ds, self.valid_ds = self.task.build_datasets(num_samples)
        except BiomedError as e:  # the task's data cannot be used (its message says why)
            raise TrainingStopped(str(e)) from e
        if self.train_ds is None or len(self.train_ds) == 0:
            raise TrainingStopped(f"task {self.task.name!r}: no training data")

    def _iterators(self, dataset, consumed: int):
        """Micro-batches of ``dataset`` from sample ``consumed``, one iterator per model chunk, each prefetched
        (data/prefetch.py: collated on a thread, pinned and copied ahead on a side stream on CUDA)."""
        it = [
            Prefetcher(
                MicroBatchIterator(dataset, self.cfg.train.micro_batch_size, self.dp_rank, self.ctx.dp, consumed),
                self.ctx.device,
            )
            for _ in self.model
        ]
        return it[0] if len(it) == 1 else it

    # ---- one step ----------------------------------------------------------------------------------
    def _run_schedule(self, data_iter, forward_only: bool, inject_nonfinite: bool = False, step_func=None) -> dict:
        """One global batch through megatron-core's schedule with the task's forward step (or ``step_func``);
        returns the task's metrics over it (floats: a host read)."""
        losses = self._schedule(data_iter, forward_only, inject_nonfinite, step_func)
        return self._metric_values(self._global_sums(losses))

    def _schedule(self, data_iter, forward_only: bool, inject_nonfinite: bool = False, step_func=None) -> list:
        """One global batch through megatron-core's schedule: the loss functions' reports of this rank."""
        fb = get_forward_backward_func()
        t = self.cfg.train
        step_func = step_func or self.task.forward_step
        if inject_nonfinite:
            step_func = _with_injected_nonfinite(step_func)
        return fb(
            forward_step_func=step_func,
            data_iterator=data_iter,
            model=self.model if len(self.model) > 1 else self.model[0],
            num_microbatches=self.num_microbatches,
            seq_length=self.task.seq_length(),
            micro_batch_size=t.micro_batch_size * self.task.rows_per_sample(),
            forward_only=forward_only,
        )

    def forward_pass(self, dataset, step_func=None) -> dict:
        """One global batch of ``dataset`` (from its start), forward only, with the task's forward step or
        ``step_func``; the task's metrics over it. For callers that record their own per-sample numbers."""
        return self._run_schedule(self._iterators(dataset, 0), forward_only=True, step_func=step_func)

    def _global_sums(self, losses, stop_requested: bool = False) -> torch.Tensor:
        """``[n_metrics + 1, 2]`` float64 on the device the collective takes: each metric's numerator and
        denominator summed over micro-batches and data-parallel ranks (the same numbers on every rank; the first
        is the task's loss), and a last row whose first value counts the ranks with ``stop_requested``. One
        all-reduce, no host read."""
        names = list(self.task.metric_names)
        # nccl reduces device tensors, gloo host ones.
        device = self.ctx.device if self.ctx.backend == "nccl" else torch.device("cpu")
        local = torch.zeros(len(names) + 1, 2, dtype=torch.float64, device=device)
        if self.is_last_stage and losses:
            reports = [torch.stack([report[name].view(2) for name in names]) for report in losses]
            local[: len(names)] += torch.stack(reports).sum(0).to(device, torch.float64)
        if stop_requested:
            local[len(names), 0] = 1.0
        if dist.is_initialized():
            dist.all_reduce(local)  # TP copies multiply numerator and denominator alike
        return local

    def _metric_ratios(self, sums: torch.Tensor) -> dict:
        """``{name: 0-d tensor}`` numerator / denominator of each metric (NaN where nothing was counted)."""
        ratios = torch.where(sums[:, 1] > 0, sums[:, 0] / sums[:, 1].clamp_min(1e-300), float("nan"))
        return {name: ratios[i] for i, name in enumerate(self.task.metric_names)}

    def _metric_values(self, sums: torch.Tensor) -> dict:
        """The metrics as floats (one host read)."""
        ratios = self._metric_ratios(sums)
        return dict(zip(ratios, torch.stack(list(ratios.values())).tolist()))

    def train_step(self, data_iter, iteration: int, stop_requested: bool = False) -> StepResult:
        """One optimizer step over a global batch (skipped, grads dropped, when the global loss is not finite).
        ``stop_requested``: this rank got a preemption signal; ``StepResult.stop`` says whether any rank did."""
        for m in self.model:
            m.zero_grad_buffer()
        self.optimizer.zero_grad()
        t = self.cfg.train
        inject = iteration in (t.inject_nonfinite_loss_at or [])
        step_func = None
        if faults.kills_this_step(iteration, t.inject_kill_at, t.inject_kill_rank, self.ctx.env.rank):
            step_func = faults.with_rank_kill(self.task.forward_step, self.ctx.env.rank)
        # The rate this step uses (of the groups on the configured schedule: not a layer-wise decayed one).
        groups = self.optimizer.param_groups
        lr = next((g["lr"] for g in groups if g.get("default_config", True)), groups[0]["lr"])
        losses = self._schedule(data_iter, forward_only=False, inject_nonfinite=inject, step_func=step_func)
        sums = self._global_sums(losses, stop_requested)
        metrics = self._metric_ratios(sums)
        loss = metrics[self.task.metric_names[0]]
        finite, stop = self._step_decisions(loss, sums)
        if not finite:
            # Every rank sees the same global loss, so all skip together; the grads are dropped.
            for m in self.model:
                m.zero_grad_buffer()
            self.optimizer.zero_grad()
            return StepResult(loss, float("nan"), lr, skipped=True, metrics=metrics, stop=stop)
        ok, grad_norm, _ = self.optimizer.step()
        if ok:
            self.scheduler.step(increment=1)
            if self.ema is not None:
                if self.cfg.parallel.overlap_param_gather:
                    # The step updated only this rank's shard; the average needs the whole step's weights now
                    # (as a save does: optimizer.py _gather_params_before_saving), at the cost of the overlap.
                    for m in self.model:
                        m.start_param_sync(force_sync=True)
                self.ema.update(self.model)
        if grad_norm is None:
            grad_norm = float("nan")
        return StepResult(loss, grad_norm, lr, skipped=not ok, metrics=metrics, stop=stop)

    @staticmethod
    def _step_decisions(loss: torch.Tensor, sums: torch.Tensor) -> tuple[bool, bool]:
        """(global loss finite, some rank asked to stop): the step's one host read, needed before the optimizer
        step (a non-finite loss must not update the weights; megatron-core's optimizers decide on the host)."""
        finite, stop = torch.stack([torch.isfinite(loss), sums[-1, 0] > 0]).tolist()
        return bool(finite), bool(stop)

    def evaluate(self, dataset=None) -> dict:
        """The task's metrics over ``eval_iters`` global batches of the validation set (or ``dataset``; each the
        mean of the per-batch values), plus ``ppl`` = exp(loss) for language-model losses."""
        names = list(self.task.metric_names)
        dataset = self.valid_ds if dataset is None else dataset
        if dataset is None or not self.cfg.train.eval_iters:
            return {name: float("nan") for name in names} | {"ppl": float("nan")}
        if self.ema is not None and self.cfg.optimizer.ema_eval:
            with self.ema.swapped_in(self.model):
                return self._evaluate(dataset)
        return self._evaluate(dataset)

    def _evaluate(self, dataset) -> dict:
        names = list(self.task.metric_names)
        for m in self.model:
            m.eval()
        totals = dict.fromkeys(names, 0.0)
        data_iter = self._iterators(dataset, 0)
        with torch.no_grad():
            for _ in range(self.cfg.train.eval_iters):
                for name, value in self._run_schedule(data_iter, forward_only=True).items():
                    totals[name] += value
        for m in self.model:
            m.train()
        result = {name: v / self.cfg.train.eval_iters for name, v in totals.items()}
        if self.task.reports_perplexity:
            result["ppl"] = math.exp(min(result[names[0]], 50.0))
        return result

    # ---- checkpoints -------------------------------------------------------------------------------
    def save(self, final: bool = False) -> None:
        """Save at the current iteration: in the background with checkpoint.async_save (``final``: and wait
        for it, the run is ending). A failed save stops the run or, with checkpoint.on_save_error=continue,
        is logged and training goes on to the next save (a failed final save always stops it)."""
        ck = self.cfg.checkpoint
        pending = None
        try:
            pending = start_save(
                ck.save,
                self.model,
                self.optimizer,
                self.scheduler,
                self.state,
                use_dist_opt=self.cfg.parallel.use_distributed_optimizer,
                dist_opt_format=ck.dist_optimizer_format,
                keep_last=ck.keep_last,
                run_config=self.cfg.to_dict(),
                extra_models=self._extra_models(),
            )
            if ck.async_save:
                if self.async_saver is None:
                    self.async_saver = AsyncCheckpointer()
                self._save_done(self._guarded(self.async_saver.submit, pending))
                if final:
                    self.finish_saves()
                return
            path = finish_save(pending)
        except CheckpointError as e:
            self._save_failed(e, pending, final)
            return
        self._save_done(path)

    def _guarded(self, submit, pending):
        """Run ``submit(pending)``; it may finalise the save before it, whose failure is that save's."""
        previous = self.async_saver.pending
        try:
            return submit(pending)
        except CheckpointError as e:
            if previous is None or self.async_saver.pending is not None:
                raise
            self._save_failed(e, previous, final=False)
        return submit(pending)

    def poll_saves(self) -> None:
        """At a step boundary: finalise a background save whose writes are done (a collective)."""
        if self.async_saver is None or self.async_saver.pending is None:
            return
        pending = self.async_saver.pending
        try:
            self._save_done(self.async_saver.poll())
        except CheckpointError as e:
            self._save_failed(e, pending, final=False)

    def finish_saves(self) -> None:
        """Before the run exits: wait for a background save in flight and finalise it (a collective)."""
        if self.async_saver is None or self.async_saver.pending is None:
            return
        pending = self.async_saver.pending
        try:
            self._save_done(self.async_saver.wait())
        except CheckpointError as e:
            self._save_failed(e, pending, final=True)

    def _report_unfinished_save(self) -> None:
        """The run is ending on an error: finish a background save in flight if the ranks still can, else
        say which save was lost and which checkpoint stays the newest complete one."""
        if self.async_saver is None or self.async_saver.pending is None:
            return
        pending = self.async_saver.pending
        try:
            self._save_done(self.async_saver.wait())
        except BaseException as e:  # the ranks may be gone: report, do not mask the error that ends the run
            try:
                newest = latest_iteration(pending.root)
            except CheckpointError:
                newest = None
            log.error(
                "the checkpoint of iteration %d did not finish (%s: %s); the newest complete checkpoint is %s",
                pending.iteration, type(e).__name__, e,
                iteration_dir(pending.root, newest) if newest is not None else "none",
            )  # fmt: skip
            self.async_saver.close()

    def _save_done(self, done) -> None:
        if done is None:
            return
        path = getattr(done, "final", done)
        self.failed_save = None
        if self.rank0:
            log.info("saved checkpoint %s", path)

    def _save_failed(self, error: Exception, pending, final: bool) -> None:
        if pending is not None:
            discard_failed_save(pending)
        if final or self.cfg.checkpoint.on_save_error == "stop":
            raise error
        self.failed_save = str(error)
        if self.rank0:
            log.error("checkpoint save failed, training goes on (checkpoint.on_save_error=continue): %s", error)

    def _extra_models(self) -> dict:
        """The weights besides the model that checkpoints hold (the moving average, with optimizer.ema_decay)."""
        return {EMA_KEY: self.ema.chunks} if self.ema is not None else {}

    def load(self) -> None:
        """Resume from checkpoint.load, or initialise the weights from checkpoint.init_from; a moving average
        (optimizer.ema_decay) is resumed with the rest, or starts at the weights the run starts from."""
        resumed = self._load()
        if self.ema is not None and not resumed:
            self.ema.reset(self.model)

    def _load(self) -> bool:
        ck = self.cfg.checkpoint
        if ck.load:
            state = load_checkpoint(
                ck.load,
                self.model,
                self.optimizer,
                self.scheduler,
                use_dist_opt=self.cfg.parallel.use_distributed_optimizer,
                dist_opt_format=ck.dist_optimizer_format,
                verify_checksums=ck.verify_checksums,
                extra_models=self._extra_models(),
            )
            if state is not None:
                self.state = state
                if self.rank0:
                    log.info(
                        "resumed from %s at iteration %d (consumed samples %d)",
                        ck.load,
                        state.iteration,
                        state.consumed_samples,
                    )
                return True
        if ck.init_from:
            load_checkpoint(
                ck.init_from,
                self.model,
                weights_only=True,
                # init_with_head: the head must be in the checkpoint too (a fine-tune continued on a new task).
                new_params=() if ck.init_with_head else self.task.new_parameter_prefixes(),
                verify_checksums=ck.verify_checksums,
            )
            if self.rank0:
                log.info("initialised model weights from %s (init_with_head=%s)", ck.init_from, ck.init_with_head)
        return False

    # ---- the loop ----------------------------------------------------------------------------------
    def train(self) -> dict:
        t, ck = self.cfg.train, self.cfg.checkpoint
        self.load()
        self.task.prepare(self)
        preempt = PreemptionHandler()
        data_iter = self._iterators(self.train_ds, self.state.consumed_samples)
        self._window = _LogWindow(self, StepTimer(self.ctx.device))
        consecutive_bad = 0
        ran = 0
        summary: dict = {"preempted": False}
        finished = False
        try:
            while self.state.iteration < t.train_iters:
                self._window.timer.start()
                result = self.train_step(data_iter, self.state.iteration + 1, stop_requested=preempt.requested)
                self._window.timer.stop()
                if t.inject_step_delay_s:
                    time.sleep(t.inject_step_delay_s)  # after the timing: a slow step, not a slow measurement
                self.state.iteration += 1
                self.state.consumed_samples += t.global_batch_size
                ran += 1
                if result.skipped:
                    self.state.skipped_nonfinite += 1
                    consecutive_bad += 1
                    if self.rank0:
                        log.warning(
                            "iteration %d: non-finite loss (%s), step skipped (%d in a row, %d in total)",
                            self.state.iteration,
                            float(result.loss),  # a host read, on a skipped step only
                            consecutive_bad,
                            self.state.skipped_nonfinite,
                        )
                    if consecutive_bad >= t.max_consecutive_nonfinite:
                        self._window.add(self.state.iteration, result)
                        raise TrainingStopped(
                            f"{consecutive_bad} consecutive non-finite losses "
                            f"(last at iteration {self.state.iteration}); "
                            "stopping. Lower optimizer.lr, check the data, or resume from the last checkpoint."
                        )
                else:
                    consecutive_bad = 0
                self._window.add(self.state.iteration, result)
                exiting = bool(t.exit_after_iters and ran >= t.exit_after_iters)
                last = self.state.iteration >= t.train_iters or result.stop or exiting
                evaluating = t.eval_interval and self.state.iteration % t.eval_interval == 0
                if self._is_log_iteration(self.state.iteration) or last or evaluating:
                    self._window.flush()  # the log interval's host read (before validation writes its own record)
                if evaluating:
                    self._log_eval()
                self.poll_saves()
                if ck.save and ck.save_interval and self.state.iteration % ck.save_interval == 0:
                    self.save()
                if result.stop:
                    if self.rank0:
                        log.warning(
                            "preemption signal received (%s): saving at iteration %d and exiting",
                            preempt.signal_name(), self.state.iteration,
                        )  # fmt: skip
                    if ck.save and not (ck.save_interval and self.state.iteration % ck.save_interval == 0):
                        self.save()
                    summary["preempted"] = True
                    summary["preempt_signal"] = preempt.signal_name()
                    break
                if t.exit_after_iters and ran >= t.exit_after_iters:
                    break
            else:
                if ck.save and not (ck.save_interval and self.state.iteration % ck.save_interval == 0):
                    self.save()
            finished = True
        finally:
            preempt.restore()
            self._window.flush_quietly()  # the steps of a window an error cut short still reach the metrics
            if finished:
                self.finish_saves()
            else:
                self._report_unfinished_save()
        if self.failed_save:
            raise CheckpointError(f"the run's last save failed: {self.failed_save}")
        if self.state.iteration >= t.train_iters and t.eval_iters and self.valid_ds is not None:
            if self._last_eval and self._last_eval[0] == self.state.iteration:
                result = self._last_eval[1]
            else:
                result = self._log_eval()
            summary["val_loss"] = result[self.task.metric_names[0]]
            summary["val_ppl"] = result.get("ppl", float("nan"))
            summary["val_metrics"] = result
        summary["iteration"] = self.state.iteration
        self.writer.close()
        return summary

    def _is_log_iteration(self, iteration: int) -> bool:
        """A console line at this iteration (logging.log_interval, and the first)."""
        return iteration % self.cfg.logging.log_interval == 0 or iteration == 1

    def _log_eval(self) -> dict:
        result = self.evaluate()
        self._last_eval = (self.state.iteration, result)
        self._report_eval("valid", "validation", result)
        if self._extra_eval is None:
            self._extra_eval = self.task.extra_eval_datasets()
        for name, dataset in self._extra_eval.items():
            self._report_eval(f"valid-{name}", f"validation on {name}", self.evaluate(dataset))
        return result

    def _report_eval(self, prefix: str, what: str, result: dict) -> None:
        main = self.task.metric_names[0]
        self.writer.write(self.state.iteration, {"loss": result[main], **result}, prefix=prefix)
        if self.rank0:
            extra = "".join(f" | {k} {v:.4f}" for k, v in result.items() if k not in (main, "ppl"))
            if "ppl" in result:
                extra = f" | perplexity {result['ppl']:.4f}" + extra
            log.info("%s at iteration %d | %s %.6e%s", what, self.state.iteration, main, result[main], extra)


class _LogWindow:
    """The steps since the last log point: their results (device tensors) and times, read with one
    synchronisation at the log interval, then written to the metrics sinks (every step's record, as before)
    and, at a log iteration, the console line."""

    def __init__(self, trainer: Trainer, timer: StepTimer):
        self.trainer, self.timer = trainer, timer
        self.records = ScalarWindow()
        cfg = trainer.cfg
        self.tokens_per_iter = cfg.train.global_batch_size * trainer.task.rows_per_sample() * trainer.task.seq_length()
        self.flops_per_iter = flops_per_token(cfg.model) * self.tokens_per_iter

    def add(self, iteration: int, result: StepResult) -> None:
        main = self.trainer.task.metric_names[0]
        self.records.add(iteration, {
            "loss": result.loss, "lr": result.lr, "grad_norm": result.grad_norm,
            "skipped": self.trainer.state.skipped_nonfinite,
            **{k: v for k, v in result.metrics.items() if k != main},
        })  # fmt: skip

    def flush(self) -> None:
        tr = self.trainer
        if not tr.rank0:  # only rank 0 writes: the other ranks never wait for these numbers
            self.timer.discard()
            self.records.clear()
            return
        times = self.timer.collect()
        world = tr.ctx.env.world_size
        peak = tr.cfg.logging.peak_flops_per_rank
        main = tr.task.metric_names[0]
        memory = peak_memory_gib()  # the allocator's high-water mark so far: a host-side counter, no device sync
        for (iteration, s), elapsed in zip(self.records.drain(), times):
            tflops = self.flops_per_iter / max(elapsed, 1e-9) / world / 1e12
            extra = {k: v for k, v in s.items() if k not in ("loss", "lr", "grad_norm", "skipped")}
            scalars = {
                "loss": s["loss"], "lr": s["lr"], "grad_norm": s["grad_norm"],
                "tokens_per_s": self.tokens_per_iter / max(elapsed, 1e-9), "tflops_per_rank": tflops,
                "mfu": mfu(tflops, peak), "skipped": s["skipped"], "step_time_s": elapsed, **extra,
            }  # fmt: skip
            if memory is not None:
                scalars["peak_memory_gib"] = memory
            tr.writer.write(iteration, scalars)
            if tr._is_log_iteration(iteration):
                line = format_train_line(iteration, tr.cfg.train.train_iters, scalars, loss_name=main)
                log.info(" | ".join([line, *(f"{k} {extra[k]:.4f}" for k in tr.task.metric_names[1:])]))

    def flush_quietly(self) -> None:
        """``flush`` on the way out of a run that may be failing: its own error is logged, never raised over
        the one ending the run."""
        if not len(self.records):
            return
        try:
            self.flush()
        except Exception as e:  # the device may be gone with the error that ends the run
            log.error("the metrics of the last %d steps were lost (%s: %s)", len(self.records), type(e).__name__, e)
            self.records.clear()
