"""The ``torch.ops.megatron_biomed.*`` ops of ``megatron_biomed._C`` and their fake implementations.

The schemas are defined in C++ (``csrc/torch/ops.cpp``, ``TORCH_LIBRARY(megatron_biomed, m)``) and
the CUDA implementations registered there. This module loads the extension and registers, in
Python, the fake (meta) implementations, so shapes and dtypes can be checked on meta tensors and
under ``FakeTensorMode`` without a GPU (and so ``torch.compile`` can trace the ops). The fakes apply
the same argument checks as the C++ side.
"""

from __future__ import annotations

import torch

# What the CUDA side instantiates (csrc/cuda/*.cu); the fakes reject the rest like the real ops.
NORM_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
SOFTMAX_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
FLASH_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
FLASH_HEAD_DIMS = (64, 80, 96, 128)
NORM_MAX_HIDDEN = 16384
SOFTMAX_MAX_KEYS = 16384

OP_NAMES = (
    "layer_norm_fwd",
    "layer_norm_bwd",
    "rms_norm_fwd",
    "rms_norm_bwd",
    "scaled_masked_softmax_fwd",
    "scaled_causal_softmax_fwd",
    "scaled_softmax_bwd",
    "flash_attn_fwd",
    "flash_attn_bwd",
)

_state: dict[str, object] = {"loaded": False, "error": None}


def load_error() -> str | None:
    """Load ``megatron_biomed._C`` once (registering the fakes); None on success, else why not."""
    if not _state["loaded"]:
        _state["loaded"] = True
        try:
            import megatron_biomed._C  # noqa: F401  (registers the ops; optional build: only with nvcc and CUDA torch)
        except ImportError as e:
            _state["error"] = (
                f"megatron_biomed._C (the CUDA kernels) is not built ({e}); on a machine with nvcc and a "
                "CUDA build of torch run `pip install --no-build-isolation -e .` (MEGATRON_BIOMED_BUILD_CUDA=1 "
                "forces the build)"
            )
        else:
            _register_fakes()
    return _state["error"]  # type: ignore[return-value]


def ops():
    """``torch.ops.megatron_biomed`` after loading the extension (raises if it is not built)."""
    if err := load_error():
        raise ImportError(err)
    return torch.ops.megatron_biomed


class _Primitives:
    """The ``torch.ops.megatron_biomed`` ops under the primitive names kernels/functions.py calls (the extension
    is loaded at the first use, not when this module is imported)."""

    def __getattr__(self, name: str):
        return getattr(ops(), name)


# What the csrc provider (kernels/providers.py) hands the functional ops.
PRIMITIVES = _Primitives()


# ---------------------------------------------------------------------------------------------
# argument checks shared by the fakes (the C++ bindings check the same things with TORCH_CHECK)


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise RuntimeError(msg)


def check_norm_args(op: str, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    _check(x.dtype in NORM_DTYPES, f"{op}: x.dtype {x.dtype} is not one of {NORM_DTYPES}")
    _check(x.dim() >= 1, f"{op}: x must have a hidden dimension")
    hidden = x.shape[-1]
    _check(0 < hidden <= NORM_MAX_HIDDEN, f"{op}: hidden size {hidden} must be in [1, {NORM_MAX_HIDDEN}]")
    _check(
        weight.dim() == 1 and weight.shape[0] == hidden, f"{op}: weight shape {tuple(weight.shape)} must be ({hidden},)"
    )
    _check(weight.dtype == x.dtype, f"{op}: weight dtype {weight.dtype} must equal x dtype {x.dtype}")
    if bias is not None:
        _check(
            bias.shape == weight.shape and bias.dtype == x.dtype, f"{op}: bias must be ({hidden},) of dtype {x.dtype}"
        )


def check_softmax_args(op: str, x: torch.Tensor, mask: torch.Tensor | None, causal: bool) -> None:
    _check(x.dtype in SOFTMAX_DTYPES, f"{op}: x.dtype {x.dtype} is not one of {SOFTMAX_DTYPES}")
    _check(x.dim() == 4, f"{op}: x must be [batch, heads, seqlen_q, seqlen_k], got {tuple(x.shape)}")
    b, _, sq, sk = x.shape
    _check(0 < sk <= SOFTMAX_MAX_KEYS, f"{op}: seqlen_k {sk} must be in [1, {SOFTMAX_MAX_KEYS}]")
    if causal:
        _check(sq == sk, f"{op}: causal softmax needs seqlen_q == seqlen_k, got {sq} and {sk}")
    if mask is not None:
        _check(mask.dtype == torch.bool, f"{op}: mask must be bool (True = masked out), got {mask.dtype}")
        _check(
            mask.dim() == 4 and mask.shape[0] in (1, b) and mask.shape[1] == 1 and tuple(mask.shape[2:]) == (sq, sk),
            f"{op}: mask shape {tuple(mask.shape)} must be [1 or {b}, 1, {sq}, {sk}]",
        )


def check_flash_args(
    op: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0, offset: int = 0
) -> None:
    _check(q.dtype in FLASH_DTYPES, f"{op}: dtype {q.dtype} is not one of {FLASH_DTYPES}")
    _check(k.dtype == q.dtype and v.dtype == q.dtype, f"{op}: q, k, v must share a dtype")
    _check(q.dim() == 4 and k.dim() == 4 and v.dim() == 4, f"{op}: q, k, v must be [batch, seqlen, heads, head_dim]")
    for name, t in (("q", q), ("k", k), ("v", v)):
        _check(t.stride(3) == 1 or t.shape[3] <= 1, f"{op}: {name} must have a contiguous last dimension")
    b, _, h, d = q.shape
    _check(k.shape == v.shape, f"{op}: k {tuple(k.shape)} and v {tuple(v.shape)} differ")
    _check(k.shape[0] == b and k.shape[3] == d, f"{op}: k/v {tuple(k.shape)} do not match q {tuple(q.shape)}")
    _check(h % k.shape[2] == 0, f"{op}: query heads {h} must be a multiple of kv heads {k.shape[2]}")
    _check(d in FLASH_HEAD_DIMS, f"{op}: head_dim {d} is not one of {FLASH_HEAD_DIMS}")
    _check(0.0 <= dropout_p <= 1.0, f"{op}: dropout_p {dropout_p} must be in [0, 1]")
    _check(0 <= offset <= 0xFFFFFFFF, f"{op}: dropout offset {offset} must be in [0, 2^32)")


def empty_in_layout_of(like: torch.Tensor) -> torch.Tensor:
    """A new ``[b, s, h, d]`` tensor like ``like`` whose first three dims lie in memory in the order of
    ``like``'s strides (largest first, ties in dim order), densely packed: where the flash ops put their
    outputs (out, dq like q; dk like k; dv like v), as csrc/torch/flash_attention.cpp does."""
    order = sorted(range(3), key=lambda i: -like.stride(i))
    t = like.new_empty([like.shape[i] for i in order] + [like.shape[3]])
    inverse = [0, 0, 0, 3]
    for pos, dim in enumerate(order):
        inverse[dim] = pos
    return t.permute(inverse)


# ---------------------------------------------------------------------------------------------
# fakes


_FAKES_REGISTERED: set[str] = set()


def _register_fakes(namespace: str = "megatron_biomed") -> None:
    """Fake implementations of the ops in ``namespace`` (also used for the emulated test build of
    the same bindings, ``megatron_biomed_emu``), registered once per namespace."""
    if namespace in _FAKES_REGISTERED:
        return
    _FAKES_REGISTERED.add(namespace)
    lib = namespace + "::"

    @torch.library.register_fake(lib + "layer_norm_fwd")
    def _(x, weight, bias, eps):
        check_norm_args("layer_norm_fwd", x, weight, bias)
        stats = x.new_empty(x.shape[:-1], dtype=torch.float32)
        return torch.empty_like(x, memory_format=torch.contiguous_format), stats, torch.empty_like(stats)

    @torch.library.register_fake(lib + "layer_norm_bwd")
    def _(dy, x, weight, mean, rstd):
        check_norm_args("layer_norm_bwd", x, weight, None)
        _check(dy.shape == x.shape and dy.dtype == x.dtype, "layer_norm_bwd: dy must match x")
        _check(
            mean.shape == x.shape[:-1] and rstd.shape == x.shape[:-1], "layer_norm_bwd: mean/rstd must be x.shape[:-1]"
        )
        return (
            torch.empty_like(x, memory_format=torch.contiguous_format),
            torch.empty_like(weight),
            torch.empty_like(weight),
        )

    @torch.library.register_fake(lib + "rms_norm_fwd")
    def _(x, weight, eps):
        check_norm_args("rms_norm_fwd", x, weight, None)
        return torch.empty_like(x, memory_format=torch.contiguous_format), x.new_empty(
            x.shape[:-1], dtype=torch.float32
        )

    @torch.library.register_fake(lib + "rms_norm_bwd")
    def _(dy, x, weight, rstd):
        check_norm_args("rms_norm_bwd", x, weight, None)
        _check(dy.shape == x.shape and dy.dtype == x.dtype, "rms_norm_bwd: dy must match x")
        _check(rstd.shape == x.shape[:-1], "rms_norm_bwd: rstd must be x.shape[:-1]")
        return torch.empty_like(x, memory_format=torch.contiguous_format), torch.empty_like(weight)

    @torch.library.register_fake(lib + "scaled_masked_softmax_fwd")
    def _(x, mask, scale):
        check_softmax_args("scaled_masked_softmax_fwd", x, mask, causal=False)
        return torch.empty_like(x, memory_format=torch.contiguous_format)

    @torch.library.register_fake(lib + "scaled_causal_softmax_fwd")
    def _(x, scale):
        check_softmax_args("scaled_causal_softmax_fwd", x, None, causal=True)
        return torch.empty_like(x, memory_format=torch.contiguous_format)

    @torch.library.register_fake(lib + "scaled_softmax_bwd")
    def _(dy, y, scale):
        check_softmax_args("scaled_softmax_bwd", y, None, causal=False)
        _check(dy.shape == y.shape and dy.dtype == y.dtype, "scaled_softmax_bwd: dy must match y")
        return torch.empty_like(y, memory_format=torch.contiguous_format)

    @torch.library.register_fake(lib + "flash_attn_fwd")
    def _(q, k, v, softmax_scale, causal, dropout_p=0.0, seed=0, offset=0):
        check_flash_args("flash_attn_fwd", q, k, v, dropout_p, offset)
        b, sq, h, _ = q.shape
        return empty_in_layout_of(q), q.new_empty((b, h, sq), dtype=torch.float32)

    @torch.library.register_fake(lib + "flash_attn_bwd")
    def _(dout, q, k, v, out, lse, softmax_scale, causal, dropout_p=0.0, seed=0, offset=0):
        check_flash_args("flash_attn_bwd", q, k, v, dropout_p, offset)
        _check(dout.shape == q.shape and out.shape == q.shape, "flash_attn_bwd: dout/out must match q")
        _check(dout.stride(3) == 1 or dout.shape[3] <= 1, "flash_attn_bwd: dout must have a contiguous last dimension")
        _check(
            lse.shape == (q.shape[0], q.shape[2], q.shape[1]) and lse.dtype == torch.float32,
            "flash_attn_bwd: lse must be float32 [batch, heads, seqlen_q]",
        )
        return empty_in_layout_of(q), empty_in_layout_of(k), empty_in_layout_of(v)
