"""megatron-core's HybridStack with a PyTorch final norm.

``HybridStack.__init__`` builds ``final_norm`` with Transformer Engine's ``TENorm`` unconditionally
(megatron-core 0.19.2 ``models/hybrid/hybrid_block.py:215``), which raises ImportError without Transformer
Engine. This subclass builds the stack without it and adds megatron-core's ``WrappedTorchNorm`` (RMSNorm here)
under the same name, so checkpoint keys (``decoder.final_norm.weight``) are those of the stock stack.
"""

from __future__ import annotations

from megatron.core.models.hybrid.hybrid_block import HybridStack
from megatron.core.transformer.torch_norm import WrappedTorchNorm


class TorchNormHybridStack(HybridStack):
    """HybridStack whose final norm is a torch norm (same arguments as HybridStack)."""

    def __init__(self, config, submodules, *args, post_layer_norm: bool = True, **kwargs):
        super().__init__(config, submodules, *args, post_layer_norm=False, **kwargs)
        self.post_layer_norm = post_layer_norm
        if self.post_process and post_layer_norm:
            self.final_norm = WrappedTorchNorm(
                config=self.config, hidden_size=self.config.hidden_size, eps=self.config.layernorm_epsilon
            )
