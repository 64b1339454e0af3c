"""Core attention through ``torch.nn.functional.scaled_dot_product_attention`` (the ``"sdpa"`` choice).

:class:`SdpaDotProductAttention` is megatron-core's ``DotProductAttention`` (same constructor, forward and
attributes; ``[sq, b, heads, d]`` in, ``[sq, b, heads * d]`` out) whose core is one SDPA call, so PyTorch picks
its fastest backend per call: flash attention or cuDNN on a GPU for the causal, mask-free case (bf16/fp16), the
memory-efficient kernel for masks or fp32, the math path on CPU. No score matrix is kept for backward on the
fused backends.

* causal (no mask given): ``is_causal`` (bottom-right aligned when ``sq != sk``, as our kernels and
  megatron-core's inference path expect: query i sees keys ``j <= i + sk - sq``);
* a mask given (bool, True = masked out, megatron-core's convention): used as given, as megatron-core's
  own attention does, combined with the causal mask for ``padding_causal``; a query row that sees no key gives 0
  (our kernels' convention);
* grouped-query attention: ``enable_gqa`` (K and V are not repeated);
* attention dropout: ``dropout_p`` while training, under megatron-core's CUDA RNG tracker as its own
  attention's dropout runs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from megatron.core import tensor_parallel
from megatron.core.transformer.dot_product_attention import DotProductAttention
from megatron.core.transformer.enums import AttnMaskType
from megatron.core.transformer.transformer_config import TransformerConfig

from megatron_biomed.kernels.functions import causal_mask

__all__ = ["SdpaDotProductAttention", "sdpa_attention"]


def sdpa_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    *,
    causal: bool,
    mask: torch.Tensor | None = None,
    softmax_scale: float,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """Attention on megatron-core's layout: ``query [sq, b, h, d]``, ``key``/``value [sk, b, g, d]`` (``h`` a
    multiple of ``g``), ``mask`` bool broadcastable to ``[b, h, sq, sk]`` with True = masked out (combined with the
    causal mask when ``causal``); returns ``[sq, b, h, d]``."""
    sq, sk = query.shape[0], key.shape[0]
    q, k, v = (t.permute(1, 2, 0, 3) for t in (query, key, value))  # [b, heads, s, d] views
    allowed = None
    if causal and (mask is not None or sq != sk):  # SDPA's is_causal is top-left aligned; ours is bottom-right
        masked = causal_mask(sq, sk, query.device)
        mask = masked if mask is None else (mask | masked)
    if mask is not None:
        allowed = ~mask
    out = F.scaled_dot_product_attention(
        q,
        k,
        v,
        attn_mask=allowed,
        dropout_p=dropout_p,
        is_causal=causal and allowed is None,
        scale=softmax_scale,
        enable_gqa=q.shape[1] != k.shape[1],
    )
    if allowed is not None:  # a row that sees no key: 0, not SDPA's NaN
        out = out.masked_fill(~allowed.any(dim=-1, keepdim=True), 0.0)
    return out.permute(2, 0, 1, 3)


class SdpaDotProductAttention(DotProductAttention):
    """megatron-core ``DotProductAttention`` whose core is PyTorch SDPA (:func:`sdpa_attention`)."""

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
        if config.softmax_type != "vanilla":
            raise ValueError(
                f"SdpaDotProductAttention supports softmax_type='vanilla' only, not {config.softmax_type!r}; "
                "use kernels='torch'"
            )
        if self.scale_mask_softmax.window_size is not None:
            raise ValueError(
                "SdpaDotProductAttention does not support sliding-window attention (config.window_size); "
                "use kernels='torch'"
            )
        # megatron divides softmax_scale by the layer number under query-key layer scaling and multiplies the
        # scores by it again inside the softmax: the product is the scale.
        coeff = float(self.layer_number) if config.apply_query_key_layer_scaling else 1.0
        self.total_softmax_scale = self.softmax_scale * coeff

    def forward(
        self, query, key, value, attention_mask, attn_mask_type=None, attention_bias=None, packed_seq_params=None
    ):
        if packed_seq_params is not None or attention_bias is not None:
            raise ValueError("SdpaDotProductAttention supports neither packed sequences nor attention_bias")
        mask_type = self.attn_mask_type if attn_mask_type is None else attn_mask_type
        if mask_type == AttnMaskType.causal and attention_mask is not None:
            causal = False  # megatron-core's attention uses a given mask as is, even for the causal type
        else:
            causal = mask_type in (AttnMaskType.causal, AttnMaskType.causal_bottom_right, AttnMaskType.padding_causal)
        dropout_p = self.attention_dropout.p if self.training else 0.0
        args = dict(causal=causal, mask=attention_mask, softmax_scale=self.total_softmax_scale, dropout_p=dropout_p)
        if dropout_p > 0 and not self.config.sequence_parallel:
            with tensor_parallel.get_cuda_rng_tracker().fork():
                out = sdpa_attention(query, key, value, **args)
        else:
            out = sdpa_attention(query, key, value, **args)
        sq, b, heads, d = out.shape
        return out.reshape(sq, b, heads * d)
