"""nn.Modules that put the fused kernels into megatron-core layer specs (see models/gpt/specs.py).

* :class:`KernelNorm` -- LayerNorm or RMSNorm (``config.normalization``) with megatron's norm
  constructor ``(config, hidden_size, eps=...)``; parameters ``weight`` (and ``bias``) named like
  ``torch.nn.LayerNorm``'s, so checkpoints move freely between ``kernels`` choices.
* :class:`KernelDotProductAttention` -- megatron-core's ``DotProductAttention`` (same constructor,
  forward and attributes) whose core runs flash attention (attention dropout included), or, for
  padding / arbitrary masks or head dims flash attention does not support, the fused scaled-masked
  softmax.
* :class:`InverseLayerScaledAttention` -- wraps any core attention with GPT-2's per-layer softmax scale.

Both take ``kernels``, a choice whose provider (kernels/registry.py) runs our functional ops: "csrc", "emu"
or "torch". ``kernels="te"`` is refused: Transformer Engine's own modules come from its provider's specs.
"""

from __future__ import annotations

import logging

import torch
from megatron.core import tensor_parallel
from megatron.core.transformer.dot_product_attention import DotProductAttention
from megatron.core.transformer.enums import AttnMaskType
from megatron.core.transformer.transformer_config import TransformerConfig

from megatron_biomed.kernels import philox
from megatron_biomed.kernels.csrc_ops import FLASH_HEAD_DIMS
from megatron_biomed.kernels.functions import (
    causal_mask,
    flash_attention,
    layer_norm,
    rms_norm,
    scaled_causal_softmax,
    scaled_masked_softmax,
)
from megatron_biomed.kernels.registry import provider_class

logger = logging.getLogger(__name__)


class KernelNorm(torch.nn.Module):
    """LayerNorm / RMSNorm on the csrc kernels, built like megatron-core's norms."""

    def __init__(
        self,
        config: TransformerConfig,
        hidden_size: int,
        eps: float = 1e-5,
        persist_layer_norm: bool = False,  # accepted for megatron's signature; no effect
        zero_centered_gamma: bool | None = None,
        normalization: str | None = None,
        has_residual: bool = False,  # accepted for megatron's signature; no effect
        *,
        kernels: str = "csrc",
    ):
        super().__init__()
        provider_class(kernels).check_module(type(self).__name__)
        self.kernels = kernels
        self.normalization = normalization or config.normalization
        if self.normalization not in ("LayerNorm", "RMSNorm"):
            raise ValueError(
                f"KernelNorm: normalization={self.normalization!r} (config.normalization) must be "
                "'LayerNorm' or 'RMSNorm'"
            )
        self.hidden_size = hidden_size
        self.eps = eps
        self.zero_centered_gamma = (
            config.layernorm_zero_centered_gamma if zero_centered_gamma is None else zero_centered_gamma
        )
        init = torch.zeros if self.zero_centered_gamma else torch.ones
        self.weight = torch.nn.Parameter(init(hidden_size))
        self.bias = torch.nn.Parameter(torch.zeros(hidden_size)) if self.normalization == "LayerNorm" else None
        for p in self.parameters():  # megatron all-reduces these grads across TP under sequence parallelism
            p.sequence_parallel = config.sequence_parallel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight + 1 if self.zero_centered_gamma else self.weight
        if self.normalization == "RMSNorm":
            return rms_norm(x, weight, self.eps, kernels=self.kernels)
        return layer_norm(x, weight, self.bias, self.eps, kernels=self.kernels)

    def extra_repr(self) -> str:
        return f"{self.normalization}({self.hidden_size}, eps={self.eps}, kernels={self.kernels!r})"


_LOGGED_PATHS: set[tuple[str, str, str]] = set()


class KernelDotProductAttention(DotProductAttention):
    """megatron-core ``DotProductAttention`` on the csrc kernels.

    Inputs ``query [sq, b, heads, d]``, ``key, value [sk, b, query_groups, d]``; returns
    ``[sq, b, heads * d]``. For ``AttnMaskType.causal`` the mask argument is ignored (the causal
    mask is implied, as in Transformer Engine); padding / arbitrary masks are bool, True = masked
    out. A choice without fused attention (``kernels="torch"``) runs megatron-core's own implementation
    unchanged.

    Attention dropout (training) uses the Philox mask of ``mbk/philox.cuh`` on both paths (flash
    kernels, and kernels/philox.py around the fused softmax), its ``(seed, offset)`` drawn per call by
    :meth:`dropout_seed_offset` following megatron-core's RNG convention.
    """

    def __init__(
        self,
        config: TransformerConfig,
        layer_number: int,
        attn_mask_type: AttnMaskType,
        attention_type: str,
        attention_dropout: float | None = None,
        softmax_scale: float | None = None,
        cp_comm_type: str | None = None,
        pg_collection=None,
        *,
        kernels: str = "csrc",
    ):
        super().__init__(
            config,
            layer_number,
            attn_mask_type,
            attention_type,
            attention_dropout=attention_dropout,
            softmax_scale=softmax_scale,
            cp_comm_type=cp_comm_type,
            pg_collection=pg_collection,
        )
        self.provider = provider_class(kernels)
        self.provider.check_module(type(self).__name__)
        if config.softmax_type != "vanilla":
            raise ValueError(
                f"KernelDotProductAttention supports softmax_type='vanilla' only, not "
                f"{config.softmax_type!r}; use kernels='torch'"
            )
        if self.scale_mask_softmax.window_size is not None:
            raise ValueError(
                "KernelDotProductAttention does not support sliding-window attention "
                "(config.window_size); use kernels='torch'"
            )
        self.kernels = kernels
        # megatron applies softmax_scale (divided by the layer number under query-key layer
        # scaling) to q k^T and the layer number again inside the softmax; the product is the scale.
        self.softmax_coeff = float(self.layer_number) if config.apply_query_key_layer_scaling else 1.0
        self.total_softmax_scale = self.softmax_scale * self.softmax_coeff
        self._logged_paths: set[str] = set()  # the paths this layer took (tests read it)

    def _log_path_once(self, path: str, why: str) -> None:
        self._logged_paths.add(path)
        key = (self.kernels, path, why)
        if key not in _LOGGED_PATHS:  # logged once per process, not once per layer
            _LOGGED_PATHS.add(key)
            logger.info("KernelDotProductAttention(kernels=%r): %s (%s)", self.kernels, path, why)

    def dropout_seed_offset(self, device: torch.device) -> tuple[int, int]:
        """``(seed, offset)`` of one attention-dropout call, drawn on the host (no device sync).

        megatron-core's convention (DotProductAttention): attention dropout draws from the
        model-parallel RNG state (``get_cuda_rng_tracker().fork()``: different per tensor-parallel rank,
        which holds different heads), or from the default generator under sequence parallelism. The
        draw (philox.draw_seed_offset) advances that generator, so every call (every layer, every
        micro-batch) gets a fresh mask; the tracker states are in checkpoints (checkpoint/state.py) and
        activation recomputation restores them, so resumed runs and recomputed forwards redraw the
        same masks.
        """
        if self.config.sequence_parallel:
            return philox.draw_seed_offset(device)
        with tensor_parallel.get_cuda_rng_tracker().fork():
            return philox.draw_seed_offset(device)

    def forward(
        self, query, key, value, attention_mask, attn_mask_type=None, attention_bias=None, packed_seq_params=None
    ):
        if not self.provider.fused_attention:
            return super().forward(query, key, value, attention_mask, attn_mask_type, attention_bias, packed_seq_params)
        if packed_seq_params is not None or attention_bias is not None:
            raise ValueError("KernelDotProductAttention supports neither packed sequences nor attention_bias")
        mask_type = self.attn_mask_type if attn_mask_type is None else attn_mask_type
        sq, b, heads, d = query.shape
        dropout = self.attention_dropout.p if self.training else 0.0
        seed, offset = self.dropout_seed_offset(query.device) if dropout > 0.0 else (0, 0)
        causal = mask_type in (AttnMaskType.causal, AttnMaskType.causal_bottom_right)
        # A given mask is used as given (megatron-core's rule; SFT packing passes document masks with the causal
        # type): only mask-free calls take the flash path, which implies causality from the flag alone.
        maskless = attention_mask is None and (causal or mask_type == AttnMaskType.no_mask)
        if maskless and d in FLASH_HEAD_DIMS:
            self._log_path_once("flash attention", f"mask {mask_type.name}, head_dim {d}, dropout {dropout}")
            # [s, b, h, d] -> [b, s, h, d] views: the kernels read them through their strides, and the
            # output is allocated like q, so out.transpose(0, 1) is a contiguous [s, b, h, d]: no copies.
            out = flash_attention(
                query.transpose(0, 1),
                key.transpose(0, 1),
                value.transpose(0, 1),
                causal=causal,
                softmax_scale=self.total_softmax_scale,
                dropout_p=dropout,
                seed=seed,
                offset=offset,
                kernels=self.kernels,
            )
            return out.transpose(0, 1).reshape(sq, b, heads * d)
        why = (
            f"head_dim {d} not in {FLASH_HEAD_DIMS}"
            if d not in FLASH_HEAD_DIMS
            else f"mask {mask_type.name}" + (" with a given mask" if attention_mask is not None else "")
        )
        self._log_path_once("fused softmax", why)
        return self._softmax_attention(query, key, value, attention_mask, mask_type, causal, (dropout, seed, offset))

    def _softmax_attention(self, query, key, value, attention_mask, mask_type, causal, dropout):
        sq, b, heads, d = query.shape
        sk, groups = key.shape[0], key.shape[2]
        if heads != groups:
            key = key.repeat_interleave(heads // groups, dim=2)
            value = value.repeat_interleave(heads // groups, dim=2)
        # [s, b, heads, d] -> [b * heads, s, d]
        q = query.reshape(sq, b * heads, d).transpose(0, 1)
        k = key.reshape(sk, b * heads, d).transpose(0, 1)
        v = value.reshape(sk, b * heads, d).transpose(0, 1)
        scores = torch.bmm(q, k.transpose(1, 2)).mul_(self.softmax_scale).view(b, heads, sq, sk)
        if causal and sq == sk and attention_mask is None:
            probs = scaled_causal_softmax(scores, self.softmax_coeff, kernels=self.kernels)
        else:
            mask = attention_mask
            if causal or mask_type == AttnMaskType.padding_causal:
                cm = causal_mask(sq, sk, scores.device)
                mask = cm if mask is None else (mask | cm)
            probs = scaled_masked_softmax(scores, mask, self.softmax_coeff, kernels=self.kernels)
        dropout_p, seed, offset = dropout
        if dropout_p > 0.0:  # the flash kernels' mask (same seed/offset convention), not torch's bernoulli
            probs = philox.apply_dropout(probs, dropout_p, seed, offset)
        context = torch.bmm(probs.view(b * heads, sq, sk), v)  # [b * heads, sq, d]
        return context.view(b, heads, sq, d).permute(2, 0, 1, 3).reshape(sq, b, heads * d)


class InverseLayerScaledAttention:
    """Core-attention builder (what ``SelfAttentionSubmodules.core_attention`` holds) that builds ``inner``
    -- any of the core attentions above, or Transformer Engine's -- with GPT-2's
    ``scale_attn_by_inverse_layer_idx`` scale: ``1 / (sqrt(head_dim) * layer_number)``, layer_number being
    megatron-core's global 1-based layer number (HF's ``layer_idx + 1``). Unlike
    ``apply_query_key_layer_scaling`` this changes the result, as BioMedLM needs."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def __call__(self, *, config: TransformerConfig, layer_number: int, softmax_scale: float | None = None, **kwargs):
        base = softmax_scale if softmax_scale is not None else config.kv_channels**-0.5
        return self.inner(config=config, layer_number=layer_number, softmax_scale=base / max(1, layer_number), **kwargs)

    def __repr__(self) -> str:
        return f"InverseLayerScaledAttention({self.inner!r})"
