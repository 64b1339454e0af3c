"""Instruction SFT data from yes/no question files, as BioMamba's SFT builds it (``tools/make_instruction_sft.py``).

LeoYML/BioMamba ft_biomamba/data.py @ e61db22 ``prepare_sft_data``: PubMedQA PQA-L is split 80/20 into
train / validation with seed 42 (Hugging Face ``datasets``' ``train_test_split``: the test part is the first
ceil(20%) of ``np.random.default_rng(seed).permutation(n)``, the train part the rest in that order); BioASQ
yes/no items are mixed into the training part only, as 30% of it (``bioasq_train_ratio``: shuffled with the
seed, cycled when there are too few), and the mixed training part is shuffled again with the seed. Every item
becomes the instruction of :data:`~megatron_biomed.finetune.prompts.INSTRUCTION_TEMPLATES` with its answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from megatron_biomed.data.tasks import SFTExample
from megatron_biomed.finetune.prompts import instruction_example


@dataclass(frozen=True)
class InstructionMix:
    """How the SFT splits are drawn; defaults are LeoYML/BioMamba ft_biomamba/data.py @ e61db22
    (``prepare_sft_data``) and ft_biomamba/config.py ``SFTConfig``."""

    valid_fraction: float = 0.2  # train_test_split(test_size=0.2) of PubMedQA
    mix_ratio: float = 0.3  # bioasq_train_ratio: BioASQ's share of the mixed training part
    seed: int = 42  # SFTConfig.seed
    template: str = "biomamba_qa"  # QA_TEMPLATE


def heldout_split(items: list, fraction: float, seed: int) -> tuple[list, list]:
    """(train, held out): ``datasets.Dataset.train_test_split(test_size=fraction, seed=seed)``'s choice."""
    n = len(items)
    n_test = math.ceil(fraction * n)
    perm = np.random.default_rng(seed).permutation(n)
    return [items[i] for i in perm[n_test:]], [items[i] for i in perm[:n_test]]


def shuffled(items: list, seed: int) -> list:
    """``datasets.Dataset.shuffle(seed=seed)``'s order."""
    return [items[i] for i in np.random.default_rng(seed).permutation(len(items))]


def mix_in(train: list, extra: list, ratio: float, seed: int) -> list:
    """``train`` with ``extra`` items making ``ratio`` of the result (int(len(train) * r / (1 - r)) of them,
    shuffled, cycled when too few), the whole shuffled: their BioASQ mixing."""
    if not extra:
        return list(train)
    ratio = min(max(ratio, 0.01), 0.99)
    target = max(1, int(len(train) * ratio / (1.0 - ratio)))
    pool = shuffled(extra, seed)
    picked = (pool * math.ceil(target / len(pool)))[:target]
    return shuffled(list(train) + picked, seed)


def instruction_splits(primary: list, fmt: str, extra: list | None = None, extra_fmt: str = "bioasq",
                       mix: InstructionMix = InstructionMix()) -> tuple[list[SFTExample], list]:  # fmt: skip
    """(train, valid) SFT examples: ``primary`` items (format ``fmt``) split, ``extra`` items (format
    ``extra_fmt``) mixed into the training part."""
    train, valid = heldout_split([instruction_example(it, fmt, mix.template) for it in primary],
                                 mix.valid_fraction, mix.seed)  # fmt: skip
    if extra:
        train = mix_in(train, [instruction_example(it, extra_fmt, mix.template) for it in extra], mix.mix_ratio,
                       mix.seed)  # fmt: skip
    return train, valid
