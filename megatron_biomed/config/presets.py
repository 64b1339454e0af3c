"""Named presets: the published recipes and tiny shapes of the same families for tests and the quickstart."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable

from megatron_biomed.config.experiment import ConfigError, ExperimentConfig
from megatron_biomed.config.model import ModelConfig
from megatron_biomed.config.training import DataConfig, OptimizerConfig, TrainingConfig

# BioMedLM: 300B tokens in batches of 1024 sequences x 1024 tokens.
BIOMEDLM_TOKENS = 300_000_000_000
BIOMEDLM_GLOBAL_BATCH = 1024
BIOMEDLM_SEQ = 1024


def biomedlm_2_7b() -> ExperimentConfig:
    """BioMedLM (Stanford CRFM / MosaicML): GPT-2 style, 2.7B parameters."""
    return ExperimentConfig(
        name="biomedlm-2.7b",
        model=ModelConfig(
            family="gpt2",
            num_layers=32,
            hidden_size=2560,
            num_attention_heads=20,
            seq_length=BIOMEDLM_SEQ,
            vocab_size=28896,
            position_embedding_type="learned_absolute",
            normalization="LayerNorm",
            activation="gelu_tanh",
            add_bias_linear=True,
            tie_embeddings=True,
            scale_attn_by_inverse_layer_idx=True,  # stanford-crfm/BioMedLM config.json
            hidden_dropout=0.1,
            attention_dropout=0.1,
            kernels="csrc",  # our fused CUDA kernels (PyTorch fallback without a GPU)
        ),
        optimizer=OptimizerConfig(
            name="decoupled_adamw",
            lr=1.6e-4,
            min_lr=0.0,
            weight_decay=1.6e-5,
            adam_beta1=0.9,
            adam_beta2=0.95,
            adam_eps=1e-8,
            clip_grad=1.0,
            lr_decay_style="cosine",
            lr_warmup_iters=0,
        ),
        train=TrainingConfig(
            micro_batch_size=4,
            global_batch_size=BIOMEDLM_GLOBAL_BATCH,
            train_iters=round(BIOMEDLM_TOKENS / (BIOMEDLM_GLOBAL_BATCH * BIOMEDLM_SEQ)),
            precision="bf16",
        ),
    )


def biollm_70b() -> ExperimentConfig:
    """LLaMA-2-70B shaped decoder with 2,000 PubMed-derived tokens added to the 32,000 vocabulary."""
    seq = 4096
    return ExperimentConfig(
        name="biollm-70b",
        model=ModelConfig(
            family="llama",
            num_layers=80,
            hidden_size=8192,
            num_attention_heads=64,
            num_query_groups=8,
            ffn_hidden_size=28672,
            seq_length=seq,
            vocab_size=32000 + 2000,
            position_embedding_type="rope",
            rotary_base=10000,
            normalization="RMSNorm",
            activation="swiglu",
            add_bias_linear=False,
            tie_embeddings=False,
            hidden_dropout=0.0,
            attention_dropout=0.0,
            layernorm_epsilon=1e-5,
            kernels="csrc",
        ),
        optimizer=OptimizerConfig(
            name="adamw",
            lr=2e-5,
            min_lr=2e-6,
            weight_decay=0.1,
            adam_beta1=0.9,
            adam_beta2=0.95,
            adam_eps=1e-5,
            clip_grad=1.0,
            lr_decay_style="cosine",
            lr_warmup_iters=2000,
        ),
        # ~2M tokens per step: 512 sequences x 4096 tokens = 2,097,152.
        train=TrainingConfig(micro_batch_size=1, global_batch_size=512, train_iters=10_000, precision="bf16"),
    )


def _tiny(cfg: ExperimentConfig, name: str, **model_sizes) -> ExperimentConfig:
    """The recipe's architecture family (norm, activation, positions, bias, tying) at test size: small
    shapes, no dropout, megatron-core's PyTorch layers, fp32, a short run."""
    cfg.name = name
    cfg.model = dataclasses.replace(
        cfg.model, num_layers=4, hidden_size=64, num_attention_heads=4, seq_length=64, vocab_size=512,
        hidden_dropout=0.0, attention_dropout=0.0, kernels="torch", **model_sizes,
    )  # fmt: skip
    cfg.optimizer.lr = 1e-3
    cfg.optimizer.lr_warmup_iters = 2
    cfg.train = TrainingConfig(micro_batch_size=2, global_batch_size=8, train_iters=20, precision="fp32")
    return cfg


def tiny_biomedlm() -> ExperimentConfig:
    """BioMedLM's architecture family at a size that trains in seconds on CPU."""
    return _tiny(biomedlm_2_7b(), "tiny-biomedlm")


def tiny_llama() -> ExperimentConfig:
    """The 70B recipe's architecture family (GQA, RMSNorm, SwiGLU, RoPE) at test size."""
    return _tiny(biollm_70b(), "tiny-llama", num_query_groups=2, ffn_hidden_size=128)


# BioMamba: the public state-spaces/mamba2-* checkpoints (mamba_ssm format; their config.json: d_model, n_layer,
# vocab 50,277 padded to a multiple of 16, tied embeddings, RMSNorm, residual in fp32; Mamba2 module defaults
# state 128, head dim 64, expand 2, conv 4, chunk 256, one B/C group), continued on the 80/10/10 blend.
# (hidden, layers): huggingface.co/state-spaces/mamba2-130m config.json (d_model 768, n_layer 24); the other
# sizes from the mamba2-<size> checkpoints' config.json as mirrored on the Hub (not re-read for this table).
BIOMAMBA_SHAPES = {"130m": (768, 24), "370m": (1024, 48), "780m": (1536, 48), "1.3b": (2048, 48), "2.7b": (2560, 64)}
BIOMAMBA_VOCAB = 50277  # GPT-NeoX-20B tokenizer

# The authors' continued pretraining, LeoYML/BioMamba @ e61db22 (git rev-parse: e61db22794c0...): every size
# runs scripts/training/run_cpt_singledoc.py, which takes the rest from ft_biomamba/config.py CPTConfig and
# ft_biomamba/trainer.py; per-size values from scripts/training/run_cpt_<size>.sh, and for 130m (no such script)
# the README's quick-start command, whose output directory (checkpoints/mixed_wiki) is the 130m CPT checkpoint
# their SFT scripts start from (scripts/training/run_full_cpt_sft_tune.sh).
BIOMAMBA_SOURCE = "LeoYML/BioMamba @ e61db22"
BIOMAMBA_SEQ = 1024  # ft_biomamba/config.py CPTConfig.max_length; prepare_mix_ablation_data.py max_length=1024
BIOMAMBA_LR = 5e-6  # --lr 5e-6 in every run_cpt_<size>.sh and the README command (CPTConfig.lr)
BIOMAMBA_MIN_LR = 5e-7  # CPTConfig.min_lr_ratio 0.1: the WSD decay ends at 0.1 x lr
BIOMAMBA_WARMUP_RATIO = 0.10  # CPTConfig.warmup_ratio (of all steps)
BIOMAMBA_STABLE_RATIO = 0.65  # CPTConfig.stable_ratio; the decay is the rest (trainer.py: total - warmup - stable)
BIOMAMBA_EPOCHS = 3  # --epochs 3 in every run_cpt_<size>.sh
BIOMAMBA_EMA_DECAY = 0.999  # CPTConfig.use_ema=True, ema_decay=0.999 (evaluation and saved models use the EMA)
# Derived: the documents of one epoch, one document per sequence: the PubMed training split ("424K",
# scripts/data_preparation/prepare_mixed_data.py docstring) plus C4 and Wikipedia documents numbering 10% of it
# each (prepare_mix_ablation_data.py). The authors' step count is 3 epochs of this over their batch; the 424K is
# the rounded figure they give, so train_iters is within a fraction of a percent of theirs.
BIOMAMBA_EPOCH_DOCS = 424_000 + 2 * 42_400


@dataclass(frozen=True)
class BioMambaRun:
    """One size's published continued-pretraining values (LeoYML/BioMamba @ e61db22)."""

    global_batch_size: int  # --batch_size x --accum x GPUs: the effective batch of sequences per optimizer step
    layer_lr_decay: float  # --layer_lr_decay: layer l of L at lr x decay^(L - l)
    source: str


BIOMAMBA_RUNS = {
    "130m": BioMambaRun(256, 0.9, "README.md quick start: --batch_size 32 --accum 8, 1 GPU; layer_lr_decay: "
                                  "run_cpt_singledoc.py default 0.9 (also run_mix_ablation.sh's 130m runs)"),
    "370m": BioMambaRun(240, 0.95, "scripts/training/run_cpt_370m.sh: --batch_size 48 --accum 5, 1 GPU"),
    "780m": BioMambaRun(256, 0.95, "scripts/training/run_cpt_780m.sh: --batch_size 32 --accum 8, 1 GPU"),
    "1.3b": BioMambaRun(256, 0.95, "scripts/training/run_cpt_1.3b.sh: --batch_size 16 --accum 16, 1 GPU"),
    "2.7b": BioMambaRun(192, 0.95, "scripts/training/run_cpt_2.7b.sh: --batch_size 6 --accum 8 x 4 GPUs (torchrun)"),
}  # fmt: skip


def biomamba_schedule(global_batch_size: int) -> tuple[int, int, int]:
    """(train_iters, lr_warmup_iters, lr_wsd_decay_iters) of the authors' WSD schedule for this batch:
    3 epochs; warmup int(0.10 x steps), plateau int(0.65 x steps), cosine decay the rest (ft_biomamba/trainer.py
    get_wsd_schedule, which megatron-core's "WSD" style with lr_wsd_decay_style "cosine" reproduces)."""
    steps = BIOMAMBA_EPOCHS * math.ceil(BIOMAMBA_EPOCH_DOCS / global_batch_size)
    warmup = int(BIOMAMBA_WARMUP_RATIO * steps)
    stable = int(BIOMAMBA_STABLE_RATIO * steps)
    return steps, warmup, steps - warmup - stable


def biomamba(size: str) -> ExperimentConfig:
    """BioMamba continued pretraining of the public Mamba2 ``size`` checkpoint as the authors ran it
    (LeoYML/BioMamba @ e61db22, :data:`BIOMAMBA_RUNS`); TP = 1: one B/C group."""
    hidden, layers = BIOMAMBA_SHAPES[size]
    run = BIOMAMBA_RUNS[size]
    steps, warmup, decay = biomamba_schedule(run.global_batch_size)
    return ExperimentConfig(
        name=f"biomamba-{size}",
        model=ModelConfig(
            family="mamba2",
            num_layers=layers,
            hidden_size=hidden,
            num_attention_heads=2 * hidden // 64,  # the SSM heads (TransformerConfig checks them against TP)
            seq_length=BIOMAMBA_SEQ,
            vocab_size=BIOMAMBA_VOCAB,
            make_vocab_size_divisible_by=16,  # 50,288 rows, as the checkpoints (pad_vocab_size_multiple=16)
            position_embedding_type="learned_absolute",  # unused: HybridModel is built without positions
            normalization="RMSNorm",
            add_bias_linear=False,
            tie_embeddings=True,
            hidden_dropout=0.0,
            attention_dropout=0.0,
            layernorm_epsilon=1e-5,
            mamba_state_dim=128, mamba_head_dim=64, mamba_expand=2, mamba_num_groups=1, mamba_conv_kernel=4,
            mamba_chunk_size=256,
        ),  # fmt: skip
        # ft_biomamba/trainer.py: torch AdamW, betas (0.9, 0.95), eps default 1e-8; CPTConfig weight_decay 0.1,
        # max_grad_norm 1.0; run_cpt_singledoc.py scheduler_type="wsd"; EMA and layer-wise decay as above.
        optimizer=OptimizerConfig(
            name="adamw", lr=BIOMAMBA_LR, min_lr=BIOMAMBA_MIN_LR, weight_decay=0.1,
            adam_beta1=0.9, adam_beta2=0.95, adam_eps=1e-8, clip_grad=1.0,
            lr_decay_style="WSD", lr_warmup_iters=warmup, lr_wsd_decay_iters=decay, lr_wsd_decay_style="cosine",
            layer_lr_decay=run.layer_lr_decay, ema_decay=BIOMAMBA_EMA_DECAY, ema_eval=True,
        ),  # fmt: skip
        # One document per sequence, padded, padding out of the loss (prepare_mix_ablation_data.py tokenizes each
        # document alone with padding="max_length"; trainer.py sets the labels of attention_mask 0 to -100).
        data=DataConfig(sample_layout="document"),
        # CPTConfig.bf16 (autocast; our bf16 keeps fp32 main weights), eval_steps 500.
        train=TrainingConfig(
            micro_batch_size=4, global_batch_size=run.global_batch_size, train_iters=steps, eval_interval=500,
            precision="bf16",
        ),  # fmt: skip
    )


def tiny_mamba() -> ExperimentConfig:
    """BioMamba's family at test size, with 2 B/C groups so that TP = 2 works (8 heads of 16, state 16)."""
    cfg = _tiny(biomamba("130m"), "tiny-mamba", mamba_state_dim=16, mamba_head_dim=16, mamba_num_groups=2,
                mamba_chunk_size=16)  # fmt: skip
    cfg.model.num_attention_heads = 8  # the SSM heads: 2 x 64 / 16
    cfg.model.make_vocab_size_divisible_by = 128
    # The tests' plain schedule and packed data (the recipe's WSD, EMA, layer-wise decay and document samples
    # are options that tests turn on where they test them).
    cfg.optimizer = OptimizerConfig(
        name="adamw", lr=1e-3, min_lr=1e-5, weight_decay=0.1, adam_beta1=0.9, adam_beta2=0.95, adam_eps=1e-8,
        clip_grad=1.0, lr_decay_style="cosine", lr_warmup_iters=2,
    )  # fmt: skip
    cfg.data = DataConfig()
    return cfg


PRESETS: dict[str, Callable[[], ExperimentConfig]] = {
    "biomedlm-2.7b": biomedlm_2_7b,
    "biollm-70b": biollm_70b,
    "tiny-biomedlm": tiny_biomedlm,
    "tiny-llama": tiny_llama,
    **{f"biomamba-{size}": (lambda size=size: biomamba(size)) for size in BIOMAMBA_SHAPES},
    "tiny-mamba": tiny_mamba,
}


def get_preset(name: str) -> ExperimentConfig:
    """A fresh copy of the named preset."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
    return PRESETS[name]()
