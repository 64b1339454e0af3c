"""megatron-core's HybridStack with a PyTorch final norm.

``HybridStack.__init__`` builds ``final_norm`` with Transformer Engine's ``TENorm`` unconditionally
(megatron-core 0.19.2 ``models/hybrid/hybrid_block.py:215``), which raises ImportError without Transformer
Engine. This subclass builds the stack without it and adds a torch RMSNorm under the same name
(:class:`FinalRMSNorm`), so checkpoint keys (``decoder.final_norm.weight``) are those of the stock stack.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from megatron.core.models.hybrid.hybrid_block import HybridStack


class FinalRMSNorm(torch.nn.RMSNorm):
    """RMSNorm of the (fp32, ``fp32_residual_connection``) residual stream computed in fp32 and returned in the
    weight's dtype, as mamba_ssm's fused add-norm does (the output layer then gets bf16 under bf16 training)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x.float(), self.normalized_shape, self.weight.float(), self.eps).to(self.weight.dtype)


class TorchNormHybridStack(HybridStack):
    """HybridStack whose final norm is a torch norm (same arguments as HybridStack)."""

    def __init__(self, config, submodules, *args, post_layer_norm: bool = True, **kwargs):
        super().__init__(config, submodules, *args, post_layer_norm=False, **kwargs)
        self.post_layer_norm = post_layer_norm
        if self.post_process and post_layer_norm:
            self.final_norm = FinalRMSNorm(
                self.config.hidden_size, eps=self.config.layernorm_epsilon, dtype=self.config.params_dtype
            )
