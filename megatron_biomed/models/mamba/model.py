"""megatron-core's HybridModel, plus document resets for packed sequences.

Packed rows restart the position ids at 0 at every document: the GPT datasets with ``data.reset_position_ids``
(after every end-of-document token), SFT's packing (finetune/encoding.py ``pack_documents``). Attention models
also get a mask; a Mamba model must restart its convolution and scan there instead, or state leaks from one
document into the next. :class:`MambaLM` reads the document number of each token from the position ids and
hands it to the mixers (:class:`DocumentIds` travels where megatron-core passes ``packed_seq_params``; our
:class:`~megatron_biomed.models.mamba.mixer.TorchMambaMixer` reads it). A batch whose rows hold one document
each (position ids never back to 0) takes the plain path, so unpacked inputs compute exactly as without resets.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from megatron.core.models.hybrid.hybrid_model import HybridModel

from megatron_biomed.models.vocab_loss import RealVocabLoss


@dataclass
class DocumentIds:
    """``seq_idx`` ``[b, s]``: the document number of each token (non-decreasing along each row)."""

    seq_idx: torch.Tensor
    qkv_format: str = "sbhd"  # read by HybridModel's rotary embedding check; not THD


def document_ids(position_ids: torch.Tensor) -> torch.Tensor:
    """Document numbers from position ids that restart at 0 at each document: ``[0 1 2 0 1 0]`` -> ``[0 0 0 1 1 2]``."""
    starts = (position_ids == 0).to(torch.long)
    starts[:, 0] = 1
    return starts.cumsum(dim=-1) - 1


class MambaLM(RealVocabLoss, HybridModel):
    """HybridModel that, with ``reset_at_documents``, restarts each mixer where the position ids return to 0, and
    takes GPTModel's ``output_processor`` hook (used by megatron_biomed/models/heads.py); its loss ignores the
    vocabulary padding (models/vocab_loss.py)."""

    def __init__(self, *args, reset_at_documents: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.reset_at_documents = reset_at_documents

    def forward(self, input_ids, position_ids, attention_mask, decoder_input=None, labels=None,
                inference_context=None, runtime_gather_output=None, *, packed_seq_params=None, **kwargs):  # fmt: skip
        output_processor = kwargs.pop("output_processor", None)
        processor_context = kwargs.pop("output_processor_context", None)
        if self.reset_at_documents and packed_seq_params is None and position_ids is not None:
            if inference_context is None and kwargs.get("inference_params") is None:
                seq_idx = document_ids(position_ids)
                if bool((seq_idx[:, -1] > 0).any()):  # some row holds more than one document
                    packed_seq_params = DocumentIds(seq_idx)
        if output_processor is None or not self.post_process:
            return super().forward(input_ids, position_ids, attention_mask, decoder_input, labels, inference_context,
                                   runtime_gather_output, packed_seq_params=packed_seq_params, **kwargs)  # fmt: skip
        # GPTModel's output_processor hook (megatron-core 0.19.2 models/gpt/gpt_model.py:719-736), which HybridModel
        # lacks: the fine-tuning heads read the final-norm hidden states instead of the logits. HybridModel
        # returns those hidden states when it is not the last stage, so it runs as one here.
        self.post_process = False
        try:
            hidden_states = super().forward(input_ids, position_ids, attention_mask, decoder_input, labels,
                                            inference_context, runtime_gather_output,
                                            packed_seq_params=packed_seq_params, **kwargs)  # fmt: skip
        finally:
            self.post_process = True
        tied = self.shared_embedding_or_output_weight() if self.share_embeddings_and_output_weights else None
        return output_processor(
            hidden_states=hidden_states, output_layer=self.output_layer, output_weight=tied,
            labels=labels, loss_mask=kwargs.get("loss_mask"), input_ids=input_ids, position_ids=position_ids,
            attention_mask=attention_mask, decoder_input=decoder_input, inference_context=inference_context,
            packed_seq_params=packed_seq_params, runtime_gather_output=runtime_gather_output,
            context=processor_context, compute_language_model_loss=self.compute_language_model_loss,
            scale_logits=self._scale_logits, config=self.config,
        )  # fmt: skip
