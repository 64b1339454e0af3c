"""The pretraining loop: megatron-core model chunks, DDP, optimizer and 1F1B / interleaved schedules.

One ``Trainer`` per process. Build it from an ExperimentConfig after ``initialize_parallel``; ``train()``
runs to ``train.train_iters`` with logging, validation, checkpoints, preemption and non-finite-loss handling.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import signal
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist

from megatron_biomed.config.experiment import ExperimentConfig
from megatron_biomed.data.gpt_dataset import MicroBatchIterator, TokenInfo, build_gpt_datasets
from megatron_biomed.models.gpt import build_model_chunks, transformer_config
from megatron_biomed.parallel.initialize import ParallelContext
from megatron_biomed.training import checkpointing
from megatron_biomed.training.checkpointing import TrainState
from megatron_biomed.training.metrics import MetricsWriter, format_train_line, mfu, model_flops_per_token
from megatron_biomed.training.optimizer import build_optimizer
from megatron_biomed.training.signals import PreemptionHandler

log = logging.getLogger("megatron_biomed")


class TrainingStopped(RuntimeError):
    """Training cannot go on (e.g. too many consecutive non-finite losses)."""


@dataclass
class StepResult:
    loss: float
    grad_norm: float
    lr: float
    skipped: bool


def lm_loss(loss_mask: torch.Tensor, output_tensor: torch.Tensor):
    """Mean token loss of one micro-batch (megatron-core divides by the number of micro-batches)."""
    losses = output_tensor.float().view(-1)
    mask = loss_mask.view(-1).float()
    loss = torch.sum(losses * mask) / mask.sum().clamp_min(1.0)
    return loss, {"lm loss": loss.detach().clone()}


def forward_step(data_iterator, model, inject_nonfinite: bool = False):
    batch = next(data_iterator)
    dev = next(model.parameters()).device
    tokens = batch["tokens"].to(dev)
    labels = batch["labels"].to(dev)
    position_ids = batch["position_ids"].to(dev)
    attention_mask = batch.get("attention_mask")
    if attention_mask is not None:
        attention_mask = attention_mask.to(dev)
    output = model(tokens, position_ids, attention_mask, labels=labels)
    if inject_nonfinite and isinstance(output, torch.Tensor) and output.dim() == 2:
        output = output * float("nan")
    return output, functools.partial(lm_loss, batch["loss_mask"].to(dev))


class Trainer:
    def __init__(self, cfg: ExperimentConfig, ctx: ParallelContext, tokens: TokenInfo):
        from megatron.core import parallel_state as ps
        from megatron.core.distributed import (
            DistributedDataParallel,
            DistributedDataParallelConfig,
            finalize_model_grads,
        )

        self.cfg, self.ctx = cfg, ctx
        t = cfg.train
        self.num_microbatches = t.global_batch_size // (t.micro_batch_size * ctx.dp)
        self.tconfig = transformer_config(cfg)
        chunks = build_model_chunks(cfg, self.tconfig)
        ddp_config = DistributedDataParallelConfig(
            grad_reduce_in_fp32=True,
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
        self.dp_rank = ps.get_data_parallel_rank()
        self.is_last_stage = ps.is_pipeline_last_stage(ignore_virtual=True)
        self.rank0 = ctx.env.rank == 0
        self.state = TrainState()
        self._last_eval: tuple | None = None
        self.writer = MetricsWriter(cfg, enabled=self.rank0)
        self.tokens_info = tokens
        self.train_ds = self.valid_ds = None
        self._build_data()

    # ---- data --------------------------------------------------------------------------------------
    def _build_data(self) -> None:
        t, d = self.cfg.train, self.cfg.data
        n_evals = (t.train_iters // t.eval_interval + 1) if t.eval_interval else 1
        num_samples = (
            t.train_iters * t.global_batch_size,
            n_evals * t.eval_iters * t.global_batch_size,
            t.eval_iters * t.global_batch_size,
        )
        self.train_ds, self.valid_ds, _ = build_gpt_datasets(
            d.blend,
            seq_length=self.cfg.model.seq_length,
            seed=t.seed,
            num_samples=num_samples,
            tokens=self.tokens_info,
            split=d.split,
            cache_dir=d.cache_dir,
            mock=d.mock,
            reset_position_ids=d.reset_position_ids,
            reset_attention_mask=d.reset_attention_mask,
            eod_mask_loss=d.eod_mask_loss,
        )
        if self.train_ds is None:
            raise TrainingStopped(f"data.split={d.split!r} leaves no training data")

    def _iterators(self, dataset, consumed: int):
        it = [
            MicroBatchIterator(dataset, self.cfg.train.micro_batch_size, self.dp_rank, self.ctx.dp, consumed)
            for _ in self.model
        ]
        return it[0] if len(it) == 1 else it

    # ---- one step ----------------------------------------------------------------------------------
    def _run_schedule(self, data_iter, forward_only: bool, inject_nonfinite: bool = False) -> float:
        from megatron.core.pipeline_parallel import get_forward_backward_func

        fb = get_forward_backward_func()
        t = self.cfg.train
        losses = fb(
            forward_step_func=functools.partial(forward_step, inject_nonfinite=inject_nonfinite),
            data_iterator=data_iter,
            model=self.model if len(self.model) > 1 else self.model[0],
            num_microbatches=self.num_microbatches,
            seq_length=self.cfg.model.seq_length,
            micro_batch_size=t.micro_batch_size,
            forward_only=forward_only,
        )
        return self._global_mean_loss(losses)

    def _global_mean_loss(self, losses) -> float:
        """Mean micro-batch loss over the global batch, the same number on every rank."""
        local = torch.zeros(1, dtype=torch.float64)
        if self.is_last_stage and losses:
            local[0] = torch.stack([x["lm loss"].double().cpu() for x in losses]).mean()
        if dist.is_initialized():
            dev = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
            local = local.to(dev)
            dist.all_reduce(local)
            local = local.cpu()
        last_stage_ranks = self.ctx.tp * self.ctx.dp
        return float(local[0]) / last_stage_ranks

    def train_step(self, data_iter, iteration: int) -> StepResult:
        for m in self.model:
            m.zero_grad_buffer()
        self.optimizer.zero_grad()
        inject = iteration in (self.cfg.train.inject_nonfinite_loss_at or [])
        lr = self.optimizer.param_groups[0]["lr"]  # the rate this step uses
        loss = self._run_schedule(data_iter, forward_only=False, inject_nonfinite=inject)
        if not math.isfinite(loss):
            # Every rank sees the same global loss, so all skip together; the grads are dropped.
            for m in self.model:
                m.zero_grad_buffer()
            self.optimizer.zero_grad()
            return StepResult(loss, float("nan"), lr, skipped=True)
        ok, grad_norm, _ = self.optimizer.step()
        if ok:
            self.scheduler.step(increment=1)
        return StepResult(loss, float(grad_norm if grad_norm is not None else float("nan")), lr, skipped=not ok)

    def evaluate(self) -> tuple[float, float]:
        """(validation loss, perplexity) over ``eval_iters`` global batches."""
        if self.valid_ds is None:
            return float("nan"), float("nan")
        for m in self.model:
            m.eval()
        total = 0.0
        data_iter = self._iterators(self.valid_ds, 0)
        with torch.no_grad():
            for _ in range(self.cfg.train.eval_iters):
                total += self._run_schedule(data_iter, forward_only=True)
        for m in self.model:
            m.train()
        loss = total / self.cfg.train.eval_iters
        return loss, math.exp(min(loss, 50.0))

    # ---- checkpoints -------------------------------------------------------------------------------
    def save(self) -> None:
        ck = self.cfg.checkpoint
        path = checkpointing.save_checkpoint(
            ck.save,
            self.model,
            self.optimizer,
            self.scheduler,
            self.state,
            use_dist_opt=self.cfg.parallel.use_distributed_optimizer,
            dist_opt_format=ck.dist_optimizer_format,
            keep_last=ck.keep_last,
        )
        if self.rank0:
            log.info("saved checkpoint %s", path)

    def load(self) -> None:
        ck = self.cfg.checkpoint
        if ck.load:
            state = checkpointing.load_checkpoint(
                ck.load,
                self.model,
                self.optimizer,
                self.scheduler,
                use_dist_opt=self.cfg.parallel.use_distributed_optimizer,
                dist_opt_format=ck.dist_optimizer_format,
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
                return
        if ck.init_from:
            checkpointing.load_checkpoint(ck.init_from, self.model, weights_only=True)
            if self.rank0:
                log.info("initialised model weights from %s", ck.init_from)

    # ---- the loop ----------------------------------------------------------------------------------
    def train(self) -> dict:
        cfg, t, ck = self.cfg, self.cfg.train, self.cfg.checkpoint
        self.load()
        preempt = PreemptionHandler()
        tokens_per_iter = t.global_batch_size * cfg.model.seq_length
        flops_per_iter = model_flops_per_token(cfg.model) * tokens_per_iter
        world = self.ctx.env.world_size
        data_iter = self._iterators(self.train_ds, self.state.consumed_samples)
        consecutive_bad = 0
        ran = 0
        summary: dict = {"preempted": False}
        try:
            while self.state.iteration < t.train_iters:
                if t.inject_kill_at and self.state.iteration + 1 == t.inject_kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)  # a crash: no clean-up, no final save
                start = time.perf_counter()
                result = self.train_step(data_iter, self.state.iteration + 1)
                elapsed = time.perf_counter() - start
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
                            result.loss,
                            consecutive_bad,
                            self.state.skipped_nonfinite,
                        )
                    if consecutive_bad >= t.max_consecutive_nonfinite:
                        raise TrainingStopped(
                            f"{consecutive_bad} consecutive non-finite losses "
                            f"(last at iteration {self.state.iteration}); "
                            "stopping. Lower optimizer.lr, check the data, or resume from the last checkpoint."
                        )
                else:
                    consecutive_bad = 0
                tflops = flops_per_iter / max(elapsed, 1e-9) / world / 1e12
                scalars = {
                    "loss": result.loss,
                    "lr": result.lr,
                    "grad_norm": result.grad_norm,
                    "tokens_per_s": tokens_per_iter / max(elapsed, 1e-9),
                    "tflops_per_rank": tflops,
                    "mfu": mfu(tflops, cfg.logging.peak_flops_per_rank),
                    "skipped": self.state.skipped_nonfinite,
                    "step_time_s": elapsed,
                }
                self.writer.write(self.state.iteration, scalars)
                if self.rank0 and (self.state.iteration % cfg.logging.log_interval == 0 or self.state.iteration == 1):
                    log.info(format_train_line(self.state.iteration, t.train_iters, scalars))
                if t.eval_interval and self.state.iteration % t.eval_interval == 0:
                    self._log_eval()
                if ck.save and ck.save_interval and self.state.iteration % ck.save_interval == 0:
                    self.save()
                if preempt.should_stop():
                    if self.rank0:
                        log.warning(
                            "preemption signal received: saving at iteration %d and exiting", self.state.iteration
                        )
                    if ck.save and not (ck.save_interval and self.state.iteration % ck.save_interval == 0):
                        self.save()
                    summary["preempted"] = True
                    break
                if t.exit_after_iters and ran >= t.exit_after_iters:
                    break
            else:
                if ck.save and not (ck.save_interval and self.state.iteration % ck.save_interval == 0):
                    self.save()
        finally:
            preempt.restore()
        if self.state.iteration >= t.train_iters and t.eval_iters:
            if self._last_eval and self._last_eval[0] == self.state.iteration:
                summary["val_loss"], summary["val_ppl"] = self._last_eval[1:]
            else:
                summary["val_loss"], summary["val_ppl"] = self._log_eval()
        summary["iteration"] = self.state.iteration
        self.writer.close()
        return summary

    def _log_eval(self) -> tuple[float, float]:
        loss, ppl = self.evaluate()
        self._last_eval = (self.state.iteration, loss, ppl)
        self.writer.write(self.state.iteration, {"loss": loss, "ppl": ppl}, prefix="valid")
        if self.rank0:
            log.info("validation at iteration %d | lm loss %.6e | perplexity %.4f", self.state.iteration, loss, ppl)
        return loss, ppl
