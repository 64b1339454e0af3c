"""Philox4x32-10 and the attention-dropout mask: megatron_biomed/kernels/philox.py against Random123's
known answers and bit for bit against the C++ of csrc/include/mbk/philox.cuh (``_emu`` family
``philox_tests``).

Known-answer vectors: Random123's ``kat_vectors`` (D. E. Shaw Research), the philox4x32 10-round lines,
as reproduced in DEShawResearch/fs123, core123/ut/ut_philox.cpp (commit 3ea43efd): counter words,
key words -> output words.
"""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

from megatron_biomed.kernels import philox

KAT_4x32_10 = [
    ((0x00000000, 0x00000000, 0x00000000, 0x00000000), (0x00000000, 0x00000000),
     (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF),
     (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]  # fmt: skip


def fresh_seed() -> int:
    return int(os.environ.get("MBK_TEST_SEED", random.SystemRandom().randrange(2**31)))


@pytest.mark.parametrize("counter,key,want", KAT_4x32_10, ids=["zeros", "ones", "pi"])
def test_known_answers_python_and_cpp(emu, counter, key, want):
    got = philox.philox4x32_10(*counter, *key)
    assert tuple(int(w) for w in got) == want
    cpp = emu.philox4x32_10(np.array([counter], np.uint32), np.array([key], np.uint32))
    assert tuple(int(w) for w in cpp[0]) == want


def test_python_equals_cpp_on_random_words(emu):
    seed = fresh_seed()
    rng = np.random.default_rng(seed)
    counters = rng.integers(0, 2**32, (4096, 4), dtype=np.uint64).astype(np.uint32)
    keys = rng.integers(0, 2**32, (4096, 2), dtype=np.uint64).astype(np.uint32)
    cpp = emu.philox4x32_10(counters, keys).astype(np.int64)
    c = torch.from_numpy(counters.astype(np.int64))
    k = torch.from_numpy(keys.astype(np.int64))
    py = torch.stack(philox.philox4x32_10(c[:, 0], c[:, 1], c[:, 2], c[:, 3], k[:, 0], k[:, 1]), dim=1)
    assert torch.equal(py, torch.from_numpy(cpp)), f"seed={seed}"


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 1.0 / 3.0, 0.999, 1.0])
def test_threshold_and_scale_equal_cpp(emu, p):
    assert philox.dropout_threshold(p) == emu.dropout_threshold(p)
    assert philox.dropout_scale(p) == emu.dropout_scale(p)


def test_dropout_mask_equals_cpp_elementwise(emu):
    """dropout_keep_mask (4 columns per Philox call, vectorised) == mbk::dropout_keep element by element,
    with a seed whose high word is set (both key words matter) and a nonzero offset."""
    seed = fresh_seed()
    rng = np.random.default_rng(seed)
    key = int(rng.integers(2**63, 2**64, dtype=np.uint64))
    offset = int(rng.integers(0, 2**32))
    b, h, sq, sk, p = 2, 3, 5, 11, 0.3
    mask = philox.dropout_keep_mask(key, offset, p, b, h, sq, sk)
    bh, i, j = (x.reshape(-1).to(torch.int32).numpy() for x in torch.meshgrid(
        torch.arange(b * h), torch.arange(sq), torch.arange(sk), indexing="ij"))  # fmt: skip
    cpp = emu.dropout_keep(key, offset, philox.dropout_threshold(p), bh, i, j)
    assert torch.equal(mask.reshape(-1), torch.from_numpy(cpp)), f"seed={seed}"
    elementwise = philox.dropout_keep(key, offset, philox.dropout_threshold(p), bh, i, j)
    assert torch.equal(elementwise, torch.from_numpy(cpp)), f"seed={seed}"


def test_seed_as_int64_keeps_the_bits():
    for seed in (0, 1, 2**63 - 1, 2**63, 2**64 - 1):
        s = philox.seed_as_int64(seed)
        assert -(2**63) <= s < 2**63 and s & philox.MASK64 == seed
    a = philox.dropout_keep_mask(2**64 - 5, 7, 0.5, 1, 1, 4, 8)
    assert torch.equal(a, philox.dropout_keep_mask(philox.seed_as_int64(2**64 - 5), 7, 0.5, 1, 1, 4, 8))
    with pytest.raises(ValueError, match="offset"):
        philox.dropout_keep_mask(1, 2**32, 0.5, 1, 1, 4, 8)
