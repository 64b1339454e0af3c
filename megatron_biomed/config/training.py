"""Training, optimizer, data, checkpoint and logging configuration."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

# TrainingConfig.precision: parameters and activations in fp32, or bf16 / fp16 with fp32 main weights.
PRECISIONS = ("fp32", "bf16", "fp16")
# TrainingConfig.recompute_granularity / recompute_method choices (megatron-core's TransformerConfig names).
RECOMPUTE_GRANULARITIES = ("selective", "full")
RECOMPUTE_METHODS = ("uniform", "block")
# CheckpointConfig.on_save_error choices.
SAVE_ERROR_POLICIES = ("stop", "continue")
# OptimizerConfig.lr_decay_style: megatron-core OptimizerParamScheduler's styles ("WSD": warmup-stable-decay,
# the final lr_wsd_decay_iters steps decay in lr_wsd_decay_style).
LR_DECAY_STYLES = ("cosine", "linear", "constant", "WSD")
LR_WSD_DECAY_STYLES = ("cosine", "linear", "exponential", "minus_sqrt")
# DataConfig.sample_layout: how samples are cut from the .bin/.idx documents (data/gpt_dataset.py SAMPLE_LAYOUTS).
SAMPLE_LAYOUTS = ("packed", "document")


@dataclass
class OptimizerConfig:
    """AdamW with warmup + decay.

    ``name``: "adamw" (PyTorch/Megatron AdamW: decay step = lr x weight_decay) or
    "decoupled_adamw" (BioMedLM / Composer's DecoupledAdamW: decay step = (lr / lr_peak) x weight_decay,
    so the weight decay value is independent of the learning rate).
    """

    name: str = "adamw"
    lr: float = 3e-4
    min_lr: float = 0.0
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_eps: float = 1e-8
    clip_grad: float = 1.0
    lr_warmup_iters: int = 0
    lr_decay_style: str = "cosine"  # one of LR_DECAY_STYLES
    # None = decay over all training iterations.
    lr_decay_iters: Optional[int] = None
    # lr_decay_style "WSD" only: the last lr_wsd_decay_iters of the lr_decay_iters decay from lr to min_lr in
    # lr_wsd_decay_style; before them the rate holds at lr (megatron-core's OptimizerParamScheduler).
    lr_wsd_decay_iters: Optional[int] = None
    lr_wsd_decay_style: str = "cosine"
    # Layer-wise learning-rate decay: the parameters of layer l (1..num_layers, global over pipeline stages)
    # train at lr x layer_lr_decay^(num_layers - l) (min_lr alike); embedding, final norm and output layer at
    # lr. 1.0 = off.
    layer_lr_decay: float = 1.0
    # Exponential moving average of the weights, updated after every optimizer step:
    # ema = ema_decay x ema + (1 - ema_decay) x weights (fp32), saved in checkpoints and resumed. 0.0 = off.
    ema_decay: float = 0.0
    # Validation (and the final validation) runs on the EMA weights instead of the trained ones.
    ema_eval: bool = False


@dataclass
class DataConfig:
    """Megatron .bin/.idx training data.

    ``blend``: a list of prefixes, or of alternating weight / prefix like Megatron-LM's --data-path
    ("0.8 pubmed_text_document 0.2 c4_text_document"). ``mock`` uses megatron-core's MockGPTDataset.
    """

    blend: list = field(default_factory=list)
    split: str = "969,30,1"
    tokenizer: Optional[str] = None
    cache_dir: Optional[str] = None
    mock: bool = False
    reset_position_ids: bool = False
    reset_attention_mask: bool = False
    eod_mask_loss: bool = False
    # "packed": megatron-core's GPTDataset, documents concatenated and cut into seq_length windows;
    # "document": one document per sample, truncated to seq_length (+1 for the shifted labels) and padded,
    # with loss mask 0 on the padding (no sample holds two documents).
    sample_layout: str = "packed"


@dataclass
class CheckpointConfig:
    save: Optional[str] = None
    save_interval: int = 0
    # Keep only the newest K complete checkpoints (0 = keep all).
    keep_last: int = 0
    # Resume from the latest complete checkpoint in this directory (often the same as ``save``).
    load: Optional[str] = None
    # Initialise model weights only (no optimizer/scheduler/step) from this checkpoint directory.
    init_from: Optional[str] = None
    # With init_from: load the fine-tuned head from it too (a fine-tune continued on another task, as BioMedLM's
    # MedQA head first trained on MedMCQA); the head's shape must match. False: the head starts fresh.
    init_with_head: bool = False
    # "fully_reshardable" is the only distributed-optimizer format that reloads correctly on gloo and
    # across layouts (see megatron_biomed/parallel/cpu.py).
    dist_optimizer_format: str = "fully_reshardable"
    # Check every file's checksum against the checkpoint's manifest.json on load (sizes are always checked);
    # false skips the checksums, for huge checkpoints on storage you trust.
    verify_checksums: bool = True
    # Write checkpoints in the background (megatron-core's async save queue) while training goes on; at most
    # one save in flight; each is published (manifest, rename, tracker) only once every rank's writes are done.
    async_save: bool = False
    # A save that fails (disk full, I/O error): "stop" ends the run with the error (exit 2); "continue" logs it,
    # removes the partial directory and trains on to the next save. Either way the previous checkpoint stays
    # the newest complete one; a failed final save always ends the run with the error.
    on_save_error: str = "stop"


@dataclass
class LoggingConfig:
    log_interval: int = 1
    tensorboard_dir: Optional[str] = None
    wandb_project: Optional[str] = None
    # Peak FLOP/s per rank of the accelerator, for MFU (e.g. 989e12 for H100 bf16 dense). 0 = not reported.
    peak_flops_per_rank: float = 0.0
    # Write per-step metrics as JSON lines (rank 0) for tests and dashboards.
    metrics_file: Optional[str] = None


@dataclass
class TrainingConfig:
    micro_batch_size: int = 2
    global_batch_size: int = 8
    train_iters: int = 10
    eval_interval: int = 0
    eval_iters: int = 2
    # Extra held-out corpora (.bin/.idx prefixes, optionally NAME=PREFIX) whose loss and perplexity are
    # reported separately at every eval interval (e.g. PubMed, C4 and Wikipedia for the BioMamba blend).
    eval_corpora: list = field(default_factory=list)
    seed: int = 1234
    precision: str = "fp32"  # "fp32" | "bf16" | "fp16"
    # Activation recomputation (Korthikanti et al. 2022), passed to megatron-core's TransformerConfig.
    # None: save everything. "selective": recompute core attention (softmax, dropout, scores x values) in
    # every layer. "full": keep only each recomputed layer's input; with recompute_method "uniform" layers are
    # recomputed in groups of recompute_num_layers, with "block" only the first recompute_num_layers layers
    # of each pipeline stage (model chunk) are recomputed, the rest save their activations.
    recompute_granularity: Optional[str] = None
    recompute_method: Optional[str] = None
    recompute_num_layers: Optional[int] = None
    # "full" + "block" only: layers recomputed per pipeline stage, one entry per PP rank (earlier stages hold
    # more micro-batches in flight under 1F1B, so they may recompute more). Overrides recompute_num_layers.
    recompute_num_layers_per_stage: list = field(default_factory=list)
    # Stop with a clear message after this many consecutive non-finite losses (each such step is skipped).
    max_consecutive_nonfinite: int = 3
    # Stop (after saving) once this many steps ran in this process; 0 = no limit. For tests of resume.
    exit_after_iters: int = 0
    # Fault injection for tests of the non-finite-loss handling: make the loss NaN at these iterations.
    inject_nonfinite_loss_at: list = field(default_factory=list)
    # Fault injection for tests of crash recovery: SIGKILL in the middle of this iteration's forward-backward
    # (0 = never), in a job's first attempt only (see training/faults.py); inject_kill_rank: that rank, -1 = all.
    inject_kill_at: int = 0
    inject_kill_rank: int = -1
    # Fault injection for tests of preemption under a time limit: every step takes at least this many seconds
    # longer (a sleep after it; 0 = none), so a short run is still training when SLURM's signal comes.
    inject_step_delay_s: float = 0.0
