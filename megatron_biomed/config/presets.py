"""Named presets: the published recipes and tiny shapes of the same families for tests and the quickstart."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable

from megatron_biomed.config.experiment import ConfigError, ExperimentConfig
from megatron_biomed.config.model import ModelConfig
from megatron_biomed.config.training import DataConfig, OptimizerConfig, TrainingConfig

# Sources of the published values, as the comments below name them:
#   BioMedLM paper     = Bolton et al., "BioMedLM: A 2.7B Parameter Language Model Trained On Biomedical Text",
#                        arXiv 2403.18421: Table 1 (architecture, p. 4), p. 5 (300B tokens over The Pile's
#                        34.6B PubMed tokens), p. 6 (batch, sequence, Decoupled AdamW), Table 5 (optimizer, p. 6),
#                        Table 6 (precision, p. 6).
#   BioMedLM config    = stanford-crfm/BioMedLM config.json on the Hugging Face Hub (its fields are copied in
#                        tests/convert/published_configs.py::BIOMEDLM).
#   Llama-2-70b config = meta-llama/Llama-2-70b-hf config.json (tests/convert/published_configs.py::LLAMA_2_70B).
#   LLaMA-2 paper      = Touvron et al., arXiv 2307.09288, §2.2 (pretraining hyperparameters).
#   BioLLM issue       = this project's statement of the BioLLM-70B recipe (peak lr 2e-5, 2,000 warmup steps,
#                        ~2M-token batches on 256 GPUs, 2,000 PubMed tokens added to LLaMA-2's 32,000).
# tests/config/test_published_recipes.py holds the same values in a table and fails when a preset drifts.

# BioMedLM: 300B tokens (paper p. 5: 8.67 passes over The Pile's 34.6B PubMed tokens) in batches of
# 1024 sequences x 1024 tokens (paper p. 6).
BIOMEDLM_TOKENS = 300_000_000_000
BIOMEDLM_GLOBAL_BATCH = 1024
BIOMEDLM_SEQ = 1024
BIOMEDLM_WARMUP_BATCHES = 100  # paper Table 5: cosine with a linear warmup over 100 batches


def biomedlm_2_7b() -> ExperimentConfig:
    """BioMedLM (Stanford CRFM / MosaicML): GPT-2 style, 2.7B parameters."""
    return ExperimentConfig(
        name="biomedlm-2.7b",
        model=ModelConfig(
            family="gpt2",  # BioMedLM config: GPT2LMHeadModel
            num_layers=32,  # paper Table 1; BioMedLM config n_layer
            hidden_size=2560,  # paper Table 1; BioMedLM config n_embd
            num_attention_heads=20,  # paper Table 1; BioMedLM config n_head
            ffn_hidden_size=None,  # 4 x hidden: BioMedLM config n_inner null (GPT-2's 4 x n_embd)
            seq_length=BIOMEDLM_SEQ,  # paper Table 1 (context length); BioMedLM config n_positions
            vocab_size=28896,  # paper Table 1; BioMedLM config vocab_size (<|endoftext|> = 28895, the last id)
            # our choice: Megatron pads the embedding to a multiple of 128 x TP (28,928 rows at TP 1); the padded
            # rows are never targets, and HF export writes the 28,896 published rows.
            make_vocab_size_divisible_by=128,
            position_embedding_type="learned_absolute",  # paper p. 4 (learned absolute positional embeddings)
            normalization="LayerNorm",  # BioMedLM config: GPT-2 LayerNorm
            layernorm_epsilon=1e-5,  # BioMedLM config layer_norm_epsilon
            activation="gelu_tanh",  # BioMedLM config activation_function "gelu_new"
            add_bias_linear=True,  # BioMedLM config: GPT-2 (Conv1D with bias)
            tie_embeddings=True,  # BioMedLM config tie_word_embeddings (GPT2LMHeadModel default)
            scale_attn_by_inverse_layer_idx=True,  # BioMedLM config scale_attn_by_inverse_layer_idx
            hidden_dropout=0.1,  # BioMedLM config resid_pdrop and embd_pdrop
            attention_dropout=0.1,  # BioMedLM config attn_pdrop
            init_method_std=0.02,  # BioMedLM config initializer_range
            # our choice: the fastest available at run time (kernels/registry.py AUTO_ORDER): our fused CUDA kernels
            # where built and on a GPU, else Transformer Engine, else PyTorch SDPA; logged with the reasons.
            kernels="auto",
        ),
        optimizer=OptimizerConfig(
            name="decoupled_adamw",  # paper p. 6: Decoupled AdamW (Composer's)
            lr=1.6e-4,  # paper Table 5
            # our choice: the paper names cosine without a final lr; Composer's cosine_with_warmup decays to
            # alpha_f x peak with alpha_f = 0 by default, so to 0.
            min_lr=0.0,
            weight_decay=1.6e-5,  # paper Table 5
            adam_beta1=0.9,  # paper Table 5 (betas 0.9, 0.95)
            adam_beta2=0.95,  # paper Table 5
            adam_eps=1e-8,  # paper Table 5
            clip_grad=1.0,  # our choice: no clipping is published; 1.0 as GPT-2-style recipes use
            lr_decay_style="cosine",  # paper Table 5
            lr_warmup_iters=BIOMEDLM_WARMUP_BATCHES,  # paper Table 5: linear warmup over 100 batches
        ),
        train=TrainingConfig(
            micro_batch_size=4,  # our choice: the layout (128 GPUs x 4 x 2 accumulation steps = 1024)
            global_batch_size=BIOMEDLM_GLOBAL_BATCH,  # paper p. 6
            train_iters=round(BIOMEDLM_TOKENS / (BIOMEDLM_GLOBAL_BATCH * BIOMEDLM_SEQ)),  # 286,102: paper p. 5
            precision="bf16",  # paper Table 6: bf16 mixed precision, fp32 parameters and optimizer state
        ),
    )


# BioLLM-70B: LLaMA-2-70B continued on PubMed with an extended vocabulary.
BIOLLM_ADDED_TOKENS = 2000  # BioLLM issue: 2,000 PubMed-derived tokens


def biollm_70b() -> ExperimentConfig:
    """LLaMA-2-70B shaped decoder with 2,000 PubMed-derived tokens added to the 32,000 vocabulary."""
    seq = 4096  # Llama-2-70b config max_position_embeddings
    return ExperimentConfig(
        name="biollm-70b",
        model=ModelConfig(
            family="llama",  # Llama-2-70b config: LlamaForCausalLM
            num_layers=80,  # Llama-2-70b config num_hidden_layers
            hidden_size=8192,  # Llama-2-70b config hidden_size
            num_attention_heads=64,  # Llama-2-70b config num_attention_heads
            num_query_groups=8,  # Llama-2-70b config num_key_value_heads
            ffn_hidden_size=28672,  # Llama-2-70b config intermediate_size
            seq_length=seq,
            vocab_size=32000 + BIOLLM_ADDED_TOKENS,  # Llama-2-70b config vocab_size + BioLLM issue's 2,000
            position_embedding_type="rope",  # LLaMA-2 paper §2.2 (RoPE)
            rotary_base=10000,  # Llama-2-70b config: no rope_theta, transformers' LlamaConfig default 10000
            normalization="RMSNorm",  # LLaMA-2 paper §2.2
            activation="swiglu",  # Llama-2-70b config hidden_act "silu" in a gated MLP (SwiGLU, paper §2.2)
            add_bias_linear=False,  # Llama-2-70b config: LlamaForCausalLM has no linear biases
            tie_embeddings=False,  # Llama-2-70b config tie_word_embeddings false
            hidden_dropout=0.0,  # Llama-2-70b config: no dropout (LlamaConfig attention_dropout 0.0)
            attention_dropout=0.0,  # Llama-2-70b config
            layernorm_epsilon=1e-5,  # Llama-2-70b config rms_norm_eps
            init_method_std=0.02,  # Llama-2-70b config initializer_range
            kernels="auto",  # our choice, as BioMedLM's
        ),
        optimizer=OptimizerConfig(
            name="adamw",  # BioLLM issue: AdamW
            lr=2e-5,  # BioLLM issue: peak 2e-5
            min_lr=2e-6,  # our choice: none given; LLaMA-2 paper §2.2 decays to 10% of the peak
            weight_decay=0.1,  # our choice: none given; LLaMA-2 paper §2.2
            adam_beta1=0.9,  # our choice: none given; LLaMA-2 paper §2.2
            adam_beta2=0.95,  # our choice: none given; LLaMA-2 paper §2.2
            adam_eps=1e-5,  # our choice: none given; LLaMA-2 paper §2.2
            clip_grad=1.0,  # our choice: none given; LLaMA-2 paper §2.2
            lr_decay_style="cosine",  # BioLLM issue: cosine
            lr_warmup_iters=2000,  # BioLLM issue: 2,000 warmup steps
        ),
        train=TrainingConfig(
            micro_batch_size=1,  # our choice: the layout (examples/biollm/_layout.sh)
            global_batch_size=512,  # BioLLM issue: ~2M tokens per step = 512 x 4096 = 2,097,152
            train_iters=10_000,  # our choice: no token budget given (21B tokens); launchers take TRAIN_ITERS
            precision="bf16",  # our choice: none given; LLaMA-2's released weights are 16-bit, bf16 on A100/H100
        ),
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
