"""Direct preference optimisation (BioLLM-70B's preference tuning), sigmoid loss.

    loss = -log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r)))   [+ sft_weight * (-pi_c / tokens_c)]

with ``pi``/``ref`` the summed log-probs of a response's tokens under the policy / the frozen starting model.

Reference log-probs are precomputed once, in a forward-only pass of the starting weights over the training
(and validation) pairs before the first step, and stored with the checkpoints (``dpo_reference_logps.pt``
under ``checkpoint.save``). Why not a reference forward every step: that needs a second copy of the model
(70B more weights per GPU) or a second pass per step; one pass up front costs one forward per pair, and a
resumed run reads the stored values instead of recomputing them from weights that have since moved.

Under pipeline parallelism the chosen and rejected sequences of a pair travel in the same micro-batch (rows
``[chosen x m, rejected x m]``); log-probs, the loss and the reference values meet on the last stage.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

import torch
import torch.nn.functional as F

from megatron_biomed.finetune.data import EpochShuffled, TaskSetupError
from megatron_biomed.finetune.encoding import TruncationCount, pack_documents, preference_documents
from megatron_biomed.finetune.task_base import FinetuneTask
from megatron_biomed.training.scoring import score_samples
from megatron_biomed.training.task import metric, move_batch

log = logging.getLogger("megatron_biomed")

REFERENCE_FILE = "dpo_reference_logps.pt"


def sequence_logps(token_losses: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    """Summed log-probs of the masked tokens per row: token losses are -log p."""
    return -(token_losses.float() * loss_mask.float()).sum(-1)


def dpo_loss(policy_c, policy_r, ref_c, ref_r, beta: float, sft_weight: float = 0.0, tokens_c=None):
    """Per-pair DPO loss (and the rewards): inputs are per-pair summed log-probs."""
    reward_c = beta * (policy_c - ref_c)
    reward_r = beta * (policy_r - ref_r)
    loss = -F.logsigmoid(reward_c - reward_r)
    if sft_weight:
        loss = loss + sft_weight * (-policy_c / tokens_c)
    return loss, reward_c, reward_r


class DPOTask(FinetuneTask):
    name = "dpo"
    metric_names = ("dpo loss", "reward_accuracy", "reward_margin", "reward_chosen", "reward_rejected")
    per_token_loss = True  # the unit is a pair: the loss is normalised by the pairs of the global batch
    required_format = "preference"
    format_description = "task.format=preference files"

    def __init__(self, cfg, tokens=None):
        super().__init__(cfg, tokens)
        # split name -> [N, 2] reference log-probs (chosen, rejected); filled by prepare().
        self.reference: dict[str, torch.Tensor] = {}
        self._device_reference: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # split -> (table, its copy)
        self._split = "train"

    def check_options(self, cfg) -> None:
        if cfg.task.dpo_beta <= 0:
            raise TaskSetupError(f"task.dpo_beta must be > 0 (got {cfg.task.dpo_beta})")

    def rows_per_sample(self) -> int:
        return 2

    @classmethod
    def planned_rows(cls, cfg) -> int:
        return 2  # chosen and rejected

    def _encode(self, examples, what):
        count = TruncationCount()
        samples = []
        for ex in examples:
            docs = preference_documents(self.tok, ex, self.cfg.task.chat_template, self.eod)
            pair = pack_documents(list(docs), self.seq, self.eod, False, count)
            if len(pair) != 2:
                continue  # one side lost all its response tokens to truncation (counted)
            samples.append({k: torch.stack([pair[0][k], pair[1][k]]) for k in ("tokens", "labels", "loss_mask",
                                                                               "position_ids")})  # fmt: skip
        log.info(count.summary(f"dpo {what}"))
        if not samples:
            raise TaskSetupError(f"dpo {what}: no pair fits in {self.seq} tokens")
        return samples

    def build_datasets(self, num_samples):
        self._datasets = {"train": EpochShuffled(self._encode(self.train_items, "train"), self.shuffle_seed)}
        if self.valid_items:
            self._datasets["valid"] = EpochShuffled(self._encode(self.valid_items, "valid"), None)
        return self._datasets["train"], self._datasets.get("valid")

    # ---- reference log-probs ------------------------------------------------------------------------
    def _reference_path(self) -> Path | None:
        save = self.cfg.checkpoint.save
        return Path(save) / REFERENCE_FILE if save else None

    def prepare(self, trainer) -> None:
        path = self._reference_path()
        if path is not None and path.is_file():
            stored = torch.load(path, weights_only=True)
            sizes = {k: len(self._datasets[k]) for k in self._datasets}
            if {k: v.shape[0] for k, v in stored.items() if k in sizes} != sizes:
                raise TaskSetupError(f"{path} holds reference log-probs for other data {stored.keys()}; remove it")
            self.reference = stored
            if trainer.rank0:
                log.info("dpo: reference log-probs read from %s", path)
            return
        if trainer.state.iteration > 0:
            raise TaskSetupError(
                f"resuming DPO at iteration {trainer.state.iteration} but {path} (the reference log-probs "
                "computed from the starting weights) is missing; restart from the starting checkpoint"
            )
        for split, ds in self._datasets.items():
            self.reference[split] = self._compute_reference(trainer, ds)
        if path is not None and trainer.rank0:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            torch.save(self.reference, tmp)
            os.replace(tmp, path)
            log.info("dpo: reference log-probs of %s pairs written to %s",
                     {k: v.shape[0] for k, v in self.reference.items()}, path)  # fmt: skip

    def _compute_reference(self, trainer, ds) -> torch.Tensor:
        """[N, 2] summed log-probs (chosen, rejected) of every pair of ``ds`` under the current (starting)
        weights, from forward-only passes on the loop; every rank gets the full table."""

        def forward(batch, model):
            rows = self._rows(batch)
            output = model(rows["tokens"], rows["position_ids"], None, labels=rows["labels"])  # causal mask implied
            return output, lambda out: sequence_logps(out, rows["loss_mask"]).view(2, -1).t()

        return score_samples(trainer, ds.samples, 2, forward)

    # ---- training step ------------------------------------------------------------------------------
    def _rows(self, batch) -> dict:
        """[m, 2, S] pairs to [2m, S] rows: all chosen first, then all rejected."""

        def flat(x):
            return x.transpose(0, 1).reshape(-1, x.shape[-1])

        return {
            "tokens": flat(batch["tokens"]),
            "labels": flat(batch["labels"]),
            "loss_mask": flat(batch["loss_mask"]),
            "position_ids": flat(batch["position_ids"]),
        }

    def forward_step(self, data_iterator, model):
        batch = move_batch(next(data_iterator), model)
        rows = self._rows(batch)
        output = model(rows["tokens"], rows["position_ids"], None, labels=rows["labels"])  # causal mask implied
        split = "train" if model.training else "valid"
        return output, functools.partial(self._loss, rows["loss_mask"], batch["index"], split)

    def _loss(self, loss_mask, index, split, token_losses):
        logps = sequence_logps(token_losses, loss_mask).view(2, -1)
        ref = self._reference_on(split, logps.device)[index.to(logps.device)].float()
        tokens_c = loss_mask.view(2, -1, loss_mask.shape[-1])[0].sum(-1)
        loss, rc, rr = dpo_loss(logps[0], logps[1], ref[:, 0], ref[:, 1], self.cfg.task.dpo_beta,
                                self.cfg.task.dpo_sft_weight, tokens_c)  # fmt: skip
        pairs = index.numel()
        total = loss.sum()
        report = {
            "dpo loss": metric(total, pairs),
            "reward_accuracy": metric((rc > rr).sum(), pairs),
            "reward_margin": metric((rc - rr).sum(), pairs),
            "reward_chosen": metric(rc.sum(), pairs),
            "reward_rejected": metric(rr.sum(), pairs),
        }
        return total, torch.tensor(pairs, dtype=torch.int, device=total.device), report

    def _reference_on(self, split: str, device: torch.device) -> torch.Tensor:
        """The split's reference table on ``device``, copied there once: indexing it by the batch's (device)
        indices then needs no host read per micro-batch."""
        table = self.reference[split]
        cached = self._device_reference.get(split)
        if cached is None or cached[0] is not table or cached[1].device != device:
            cached = self._device_reference[split] = (table, table.to(device))
        return cached[1]

    def describe(self) -> str:
        return f"DPO (beta {self.cfg.task.dpo_beta}) on {len(self.train_items)} preference pairs"
