"""Attention dropout and strided tensors through the flash-attention kernels (csrc/kernels/flash_attention.cuh
on the CPU emulator), their bindings and the Python autograd Function.

* the kernel's mask, read out exactly (q = 0 gives uniform probabilities, v = identity rows makes the
  output the mask itself), is the Philox mask of kernels/philox.py, keeps a fraction within a binomial
  bound of 1 - p, changes with the offset and repeats with the same (seed, offset);
* forward (out; lse before dropout) and backward equal float64 autograd with the same mask applied;
* strided [s, b, h, d] views transposed to [b, s, h, d] give the contiguous results bit for bit, on the
  numpy bindings and on the torch bindings (whose outputs are allocated in q's layout);
* the megatron-core module with attention dropout in training takes the fused flash path, with a mask
  drawn from megatron's model-parallel RNG state, and agrees with the unfused (fused-softmax) path.

Fresh random inputs per run; MBK_TEST_SEED=<n> replays a failure.
"""

from __future__ import annotations

import math
import os
import random
import sys
from pathlib import Path

import pytest
import torch

from megatron_biomed.kernels import philox
from megatron_biomed.kernels.emu_ops import from_numpy, to_numpy

ROOT = Path(__file__).resolve().parents[2]
TOL = 1e-5


def fresh_seed() -> int:
    return int(os.environ.get("MBK_TEST_SEED", random.SystemRandom().randrange(2**31)))


def rel_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    return (x.double() - ref.double()).abs().max().item() / max(1.0, ref.double().abs().max().item())


def reference(q, k, v, causal: bool, scale: float, p: float, seed: int, offset: int):
    """float64 attention with the kernels' Philox mask: (out, lse before dropout)."""
    b, sq, h, _ = q.shape
    sk, group = k.shape[1], q.shape[2] // k.shape[2]
    k, v = k.repeat_interleave(group, dim=2), v.repeat_interleave(group, dim=2)
    s = torch.einsum("bihd,bjhd->bhij", q, k) * scale
    masked = torch.zeros(sq, sk, dtype=torch.bool)
    if causal:
        masked = torch.arange(sk)[None, :] > torch.arange(sq)[:, None] + (sk - sq)
    lse = torch.logsumexp(s.masked_fill(masked, float("-inf")), dim=-1)
    # rows that see no key: a softmax of zeros (finite gradients), multiplied away
    empty = masked.all(dim=-1, keepdim=True)
    probs = torch.softmax(s.masked_fill(masked & ~empty, float("-inf")).masked_fill(empty, 0.0), dim=-1)
    probs = probs * (~empty).to(probs.dtype)
    keep = philox.dropout_keep_mask(seed, offset, p, b, h, sq, sk)
    probs = probs * keep.to(probs.dtype) / (1.0 - p)
    return torch.einsum("bhij,bjhd->bihd", probs, v), lse


def run(emu, q, k, v, dout, causal, scale, p, seed, offset):
    out, lse = emu.flash_attention_fwd(to_numpy(q), to_numpy(k), to_numpy(v), causal, scale, None, p, seed, offset)
    dq, dk, dv = emu.flash_attention_bwd(
        to_numpy(q), to_numpy(k), to_numpy(v), out, to_numpy(dout), lse, causal, scale, None, p, seed, offset
    )
    res = {n: from_numpy(a, q.dtype) for n, a in (("out", out), ("dq", dq), ("dk", dk), ("dv", dv))}
    res["lse"] = torch.from_numpy(lse)
    return res


def test_kernel_mask_is_the_philox_mask_with_binomial_statistics(emu):
    """With q = 0 every visible probability is 1 / sk and v = identity rows make out[b, i, h, j] =
    keep / ((1 - p) sk): the kernel's own mask, compared element by element with philox.py."""
    seed = fresh_seed()
    key, offset = random.Random(seed).getrandbits(64), random.Random(seed + 1).getrandbits(32)
    b, s, h, d, p = 2, 64, 2, 64, 0.1
    q = torch.zeros(b, s, h, d)
    k = torch.randn(b, s, 1, d, generator=torch.Generator().manual_seed(seed))
    v = torch.eye(s, d).view(1, s, 1, d).expand(b, s, 1, d).contiguous()
    out, _ = emu.flash_attention_fwd(to_numpy(q), to_numpy(k), to_numpy(v), False, 1.0, None, p, key, offset)
    scaled = torch.from_numpy(out).permute(0, 2, 1, 3) * s * (1 - p)  # [b, h, i, j]
    keep = scaled > 0.5
    assert torch.allclose(scaled, keep.float(), atol=1e-5), f"seed={seed}: values are not 0 or 1 / (1 - p)"
    assert torch.equal(keep, philox.dropout_keep_mask(key, offset, p, b, h, s, s)), f"seed={seed}"
    n = keep.numel()
    kept = keep.sum().item()
    bound = 5 * math.sqrt(n * p * (1 - p))  # 5 sigma of Binomial(n, 1 - p)
    assert abs(kept - n * (1 - p)) <= bound, (
        f"seed={seed}: kept {kept} of {n}, expected {n * (1 - p):.0f} +- {bound:.0f}"
    )
    # a different offset draws a different mask; the same (seed, offset) the same one
    other, _ = emu.flash_attention_fwd(to_numpy(q), to_numpy(k), to_numpy(v), False, 1.0, None, p, key, offset ^ 1)
    again, _ = emu.flash_attention_fwd(to_numpy(q), to_numpy(k), to_numpy(v), False, 1.0, None, p, key, offset)
    assert not (other == out).all() and (again == out).all()


# (batch, seqlen_q, seqlen_k, heads, kv_heads, head_dim, causal, p)
CASES = [
    (1, 33, 40, 4, 2, 64, False, 0.1),  # GQA, ragged tiles
    (2, 20, 20, 2, 1, 80, True, 0.3),
    (1, 40, 17, 2, 2, 64, True, 0.5),  # causal Sq > Sk: rows that see no key
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"b{c[0]}-sq{c[1]}-sk{c[2]}-h{c[3]}kv{c[4]}-d{c[5]}-p{c[7]}")
def test_forward_backward_equal_float64_with_the_same_mask(emu, case):
    b, sq, sk, h, hkv, d, causal, p = case
    seed = fresh_seed()
    g = torch.Generator().manual_seed(seed)
    q, k, v, dout = (
        torch.randn(shape, generator=g) for shape in ((b, sq, h, d), (b, sk, hkv, d), (b, sk, hkv, d), (b, sq, h, d))
    )
    key, offset = random.Random(seed).getrandbits(64), random.Random(seed).getrandbits(32)
    scale = 1.0 / math.sqrt(d)
    got = run(emu, q, k, v, dout, causal, scale, p, key, offset)
    leaves = [t.double().requires_grad_() for t in (q, k, v)]
    ref_out, ref_lse = reference(*leaves, causal, scale, p, key, offset)
    ref_out.backward(dout.double())
    where = f"seed={seed}"
    assert rel_err(got["out"], ref_out.detach()) <= TOL, where
    finite = torch.isfinite(ref_lse)
    assert torch.equal(torch.isfinite(got["lse"]), finite), where
    assert rel_err(got["lse"][finite], ref_lse.detach()[finite]) <= TOL, where  # lse of P, before dropout
    for name, leaf in zip(("dq", "dk", "dv"), leaves):
        assert rel_err(got[name], leaf.grad) <= TOL, f"{where}: {name}"
    # dropout really happened: the result differs from the dropout-free one
    plain = run(emu, q, k, v, dout, causal, scale, 0.0, 0, 0)
    assert rel_err(plain["out"], got["out"]) > 1e-3, where
    assert torch.equal(plain["lse"], got["lse"]), where


def test_strided_views_equal_contiguous_bitwise(emu):
    """megatron's [s, b, h, d] tensors transposed to [b, s, h, d] (no copy) give the contiguous results."""
    seed = fresh_seed()
    g = torch.Generator().manual_seed(seed)
    s, b, h, hkv, d = 24, 2, 4, 2, 64
    q_sbhd, dout_sbhd = torch.randn(s, b, h, d, generator=g), torch.randn(s, b, h, d, generator=g)
    kv = torch.randn(s, b, hkv, 2 * d, generator=g)  # k and v as halves of one tensor: head stride 2 d
    k_sbhd, v_sbhd = kv[..., :d], kv[..., d:]
    views = [t.transpose(0, 1) for t in (q_sbhd, k_sbhd, v_sbhd, dout_sbhd)]
    assert not any(t.is_contiguous() for t in views)
    args = (True, 0.2, None, 0.1, 12345, 6)
    strided = run(emu, *views, *args[:2], *args[3:])
    dense = run(emu, *(t.contiguous() for t in views), *args[:2], *args[3:])
    for name in dense:
        assert torch.equal(strided[name], dense[name]), f"seed={seed}: {name}"
    # the numpy views really were read through their strides (no copy): shared memory with the tensors
    assert to_numpy(views[1], keep_strides=True).base is not None


@pytest.fixture(scope="module")
def bound_ops():
    """The torch bindings on the emulator (build_cuda.build_torch_emu), with csrc_ops' fakes registered."""
    from megatron_biomed.kernels import csrc_ops

    try:  # already loaded this session (test_cuda_build.py, test_gpt_with_kernels.py): same sources, same build
        torch.ops.megatron_biomed_emu.flash_attn_fwd
    except (AttributeError, RuntimeError):
        sys.path.insert(0, str(ROOT / "csrc"))
        import build_cuda

        torch.ops.load_library(str(build_cuda.build_torch_emu(ROOT, jobs=int(os.environ.get("MAX_JOBS", "2")))))
    csrc_ops._register_fakes("megatron_biomed_emu")
    return torch.ops.megatron_biomed_emu


def test_torch_bindings_strided_dropout_autograd(bound_ops):
    """FlashAttentionFunction on the torch bindings: strided views in, outputs (and grads) in q's layout,
    equal to the contiguous call bit for bit and to float64 autograd with the same mask."""
    from megatron_biomed.kernels.functions import FlashAttentionFunction

    seed = fresh_seed()
    g = torch.Generator().manual_seed(seed)
    s, b, h, hkv, d, p = 20, 2, 2, 1, 64, 0.2
    key, offset = 2**64 - 1 - seed, seed % 2**32  # a seed with the high bit set travels as a negative int64
    base = [torch.randn(s, b, n, d, generator=g) for n in (h, hkv, hkv)]
    dout = torch.randn(b, s, h, d, generator=g)
    results = []
    for strided in (True, False):
        leaves = [t.clone().requires_grad_() for t in base]
        qkv = [t.transpose(0, 1) if strided else t.transpose(0, 1).contiguous() for t in leaves]
        out = FlashAttentionFunction.apply(*qkv, 0.125, True, bound_ops, p, philox.seed_as_int64(key), offset)
        if strided:  # allocated like q: out.transpose(0, 1) is a contiguous [s, b, h, d]
            assert out.stride() == qkv[0].stride() and out.transpose(0, 1).is_contiguous()
        out.backward(dout)
        results.append((out.detach(), [t.grad for t in leaves]))
    (out, grads), (dense_out, dense_grads) = results
    assert torch.equal(out, dense_out) and all(torch.equal(a, c) for a, c in zip(grads, dense_grads)), f"seed={seed}"
    leaves = [t.double().transpose(0, 1).detach().requires_grad_() for t in base]
    ref, _ = reference(*leaves, True, 0.125, p, key, offset)
    ref.backward(dout.double())
    assert rel_err(out, ref.detach()) <= TOL, f"seed={seed}"
    for got, leaf in zip(grads, leaves):
        assert rel_err(got, leaf.grad.transpose(0, 1)) <= TOL, f"seed={seed}"
    # the fake (meta) implementations allocate the outputs in the same layouts as the bindings
    from torch._subclasses.fake_tensor import FakeTensorMode

    real = bound_ops.flash_attn_fwd(*(t.transpose(0, 1) for t in base), 0.125, True, p, 1, 2)
    real_grads = bound_ops.flash_attn_bwd(real[0], *(t.transpose(0, 1) for t in base), *real, 0.125, True, p, 1, 2)
    with FakeTensorMode() as mode:
        fake_base = [mode.from_tensor(t) for t in base]
        fake = bound_ops.flash_attn_fwd(*(t.transpose(0, 1) for t in fake_base), 0.125, True, p, 1, 2)
        fake_grads = bound_ops.flash_attn_bwd(
            fake[0], *(t.transpose(0, 1) for t in fake_base), *fake, 0.125, True, p, 1, 2
        )
    for r, f in zip((*real, *real_grads), (*fake, *fake_grads)):
        assert (r.shape, r.stride(), r.dtype) == (f.shape, f.stride(), f.dtype)
    with pytest.raises(RuntimeError, match="offset"):
        bound_ops.flash_attn_fwd(*(t.transpose(0, 1) for t in base), 0.125, True, 0.1, 1, 2**32)
    with pytest.raises(RuntimeError, match="contiguous last dimension"):
        q = base[0].transpose(0, 1)
        bound_ops.flash_attn_fwd(q.transpose(2, 3).contiguous().transpose(2, 3), q[:, :, :1], q[:, :, :1], 1.0, False)


def test_module_dropout_takes_the_fused_path(single_rank_parallel, emu_module):
    """KernelDotProductAttention with attention dropout in training: flash attention with the mask drawn
    from megatron's model-parallel RNG state; replaying the tracker state replays the mask (as a resumed
    run or a recomputed forward does), the next call draws another, and the unfused fused-softmax path
    (same draw, the causal mask passed as a padding mask) gives the same result."""
    from megatron.core import tensor_parallel
    from megatron.core.transformer.enums import AttnMaskType
    from megatron.core.transformer.transformer_config import TransformerConfig

    from megatron_biomed.kernels.functions import flash_attention
    from megatron_biomed.kernels.modules import KernelDotProductAttention

    config = TransformerConfig(
        num_layers=1, hidden_size=128, num_attention_heads=2, num_query_groups=1, use_cpu_initialization=True,
        attention_dropout=0.1, hidden_dropout=0.0, masked_softmax_fusion=False,
    )  # fmt: skip
    args = {"config": config, "layer_number": 1, "attention_type": "self"}
    flash = KernelDotProductAttention(**args, attn_mask_type=AttnMaskType.causal, kernels="emu")
    unfused = KernelDotProductAttention(**args, attn_mask_type=AttnMaskType.padding, kernels="emu")
    s, b = 16, 2
    g = torch.Generator().manual_seed(fresh_seed())
    q, k, v = (
        torch.randn(s, b, 2, 64, generator=g),
        torch.randn(s, b, 1, 64, generator=g),
        torch.randn(s, b, 1, 64, generator=g),
    )
    causal = torch.triu(torch.ones(s, s, dtype=torch.bool), 1).view(1, 1, s, s)
    tracker = tensor_parallel.get_cuda_rng_tracker()
    states = tracker.get_states()
    out = flash(q, k, v, None)  # causal layers get no mask (pretraining passes none)
    second = flash(q, k, v, None)
    assert flash._logged_paths == {"flash attention"}
    assert not torch.equal(out, second)  # a fresh mask per call
    tracker.set_states(dict(states))  # a copy: fork() writes into the dict it is given
    assert torch.equal(flash(q, k, v, None), out)  # replayed from the tracker state
    tracker.set_states(dict(states))
    seed, offset = flash.dropout_seed_offset(q.device)
    ref = flash_attention(*(t.transpose(0, 1) for t in (q, k, v)), causal=True, softmax_scale=0.125,
                          dropout_p=0.1, seed=seed, offset=offset, kernels="torch")  # fmt: skip
    assert rel_err(out, ref.transpose(0, 1).reshape(s, b, 128)) <= TOL
    tracker.set_states(dict(states))
    on_torch = KernelDotProductAttention(**args, attn_mask_type=AttnMaskType.causal, kernels="csrc")  # CPU: PyTorch
    assert rel_err(on_torch(q, k, v, None), out) <= TOL  # the same draw and mask without a GPU
    tracker.set_states(dict(states))
    padded = unfused(q, k, v, causal.expand(b, 1, s, s).contiguous())
    assert unfused._logged_paths == {"fused softmax"}
    assert rel_err(padded, out) <= TOL  # same draw, same mask on the unfused path
    flash.eval()
    assert rel_err(flash(q, k, v, None), flash_attention(*(t.transpose(0, 1) for t in (q, k, v)), causal=True,
                   softmax_scale=0.125, kernels="torch").transpose(0, 1).reshape(s, b, 128)) <= TOL  # fmt: skip


def test_a_given_mask_is_used_as_given_on_causal_layers(single_rank_parallel, emu_module):
    """A causal layer given a mask (SFT packing's block-diagonal document mask) applies it: the flash path, which
    implies causality from the flag alone, is not taken, and the result equals attention under that mask."""
    from megatron.core.transformer.enums import AttnMaskType
    from megatron.core.transformer.transformer_config import TransformerConfig

    from megatron_biomed.kernels.modules import KernelDotProductAttention

    config = TransformerConfig(
        num_layers=1, hidden_size=128, num_attention_heads=2, num_query_groups=2, use_cpu_initialization=True,
        attention_dropout=0.0, hidden_dropout=0.0, masked_softmax_fusion=False,
    )  # fmt: skip
    attn = KernelDotProductAttention(config=config, layer_number=1, attention_type="self",
                                     attn_mask_type=AttnMaskType.causal, kernels="emu")  # fmt: skip
    s, b = 12, 1
    g = torch.Generator().manual_seed(fresh_seed())
    q, k, v = (torch.randn(s, b, 2, 64, generator=g, dtype=torch.float64).float() for _ in range(3))
    doc = torch.zeros(s, dtype=torch.long)
    doc[5:] = 1  # two packed documents: rows 0-4 and 5-11
    masked = (doc[:, None] != doc[None, :]) | torch.triu(torch.ones(s, s, dtype=torch.bool), 1)
    out = attn(q, k, v, masked.view(1, 1, s, s))
    assert attn._logged_paths == {"fused softmax"}
    qd, kd, vd = (t.double()[:, 0].transpose(0, 1) for t in (q, k, v))  # [heads, s, d]
    scores = (qd @ kd.transpose(1, 2)) * 0.125
    ref = torch.softmax(scores.masked_fill(masked, float("-inf")), -1) @ vd
    assert rel_err(out, ref.transpose(0, 1).reshape(s, b, 128).float()) <= TOL
