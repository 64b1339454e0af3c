"""Scoring heads on a pretrained decoder (BioMedLM's fine-tuning): multiple choice and sequence classification
(:class:`ScoringHead`), and token classification for named-entity recognition (:class:`TokenHead`).

A scoring head reads the final-norm hidden state of each sequence's last non-pad token; a token head reads every
position. A head is attached to the last-pipeline-stage chunk of a megatron-core GPTModel as the submodule
``head`` and called through GPTModel's ``output_processor`` hook, so the output layer (logits) is skipped.

Tensor parallelism: the head's weight is replicated on every TP rank, and so is its input (the final norm's
output is the full hidden state on every TP rank). Each rank therefore computes the same head output, the
same loss, the same head gradient and the same full gradient into the body: no all-reduce is needed, and
none is done (an all-reduce of identical gradients would multiply them by TP). With sequence parallelism
the hidden states are gathered along the sequence first; the gather's backward takes this rank's slice
without summing, for the same reason. Data parallelism: the head is an ordinary parameter of the chunk, so
megatron-core's DDP reduces its gradient with the rest.
"""

from __future__ import annotations

import torch
from megatron.core.tensor_parallel.mappings import gather_from_sequence_parallel_region
from torch import nn

HEAD_PREFIX = "head."


class ScoringHead(nn.Module):
    """``Linear(hidden, out_features)`` on the last non-pad token of each sequence.

    Multiple choice: ``out_features=1`` with bias (one score per (question, option) sequence). Sequence
    classification: ``out_features=num_labels`` without bias (BioMedLM's GPT2ForSequenceClassification).
    """

    def __init__(self, hidden_size: int, out_features: int, *, bias: bool, init_std: float, dtype: torch.dtype,
                 seed: int):  # fmt: skip
        super().__init__()
        self.proj = nn.Linear(hidden_size, out_features, bias=bias, dtype=dtype)
        # Its own generator: the same initial head whatever the layout (how many layers this rank built
        # before it, and so how far the default generator has moved, differs with the pipeline split).
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.proj.weight.copy_(torch.randn(self.proj.weight.shape, generator=g) * init_std)
            if bias:
                self.proj.bias.zero_()

    def forward(self, hidden_states: torch.Tensor, last_index: torch.Tensor, sequence_parallel: bool = False):
        """``hidden_states`` [s, b, h] (megatron's layout), ``last_index`` [b]: returns [b, out_features]."""
        if sequence_parallel:
            hidden_states = gather_from_sequence_parallel_region(hidden_states, tensor_parallel_output_grad=False)
        batch = torch.arange(hidden_states.shape[1], device=hidden_states.device)
        last = hidden_states[last_index.to(hidden_states.device), batch]  # [b, h]
        return self.proj(last.to(self.proj.weight.dtype)).float()


class TokenHead(ScoringHead):
    """``Linear(hidden, num_tags)`` (with bias, as Hugging Face's GPT2ForTokenClassification) on every position:
    the tag logits of each token. Initialised, replicated over TP ranks and gathered over SP as
    :class:`ScoringHead`."""

    def forward(self, hidden_states: torch.Tensor, last_index: torch.Tensor | None = None,
                sequence_parallel: bool = False):  # fmt: skip
        """``hidden_states`` [s, b, h] (megatron's layout): returns [b, s, out_features] (``last_index`` unused)."""
        if sequence_parallel:
            hidden_states = gather_from_sequence_parallel_region(hidden_states, tensor_parallel_output_grad=False)
        return self.proj(hidden_states.transpose(0, 1).to(self.proj.weight.dtype)).float()


def _inner(chunk):
    """The GPTModel inside Float16Module (bf16/fp16) or itself."""
    return getattr(chunk, "module", chunk)


def attach_head(chunks: list, tconfig, out_features: int, *, bias: bool, seed: int, head_class=ScoringHead) -> None:
    """Give the last-pipeline-stage chunk its head (``head_class``, a no-op on other stages), initialised from
    ``seed``."""
    last = _inner(chunks[-1])
    if not getattr(last, "post_process", False):
        return
    last.head = head_class(
        tconfig.hidden_size, out_features, bias=bias, init_std=tconfig.init_method_std, dtype=tconfig.params_dtype,
        seed=seed,
    )  # fmt: skip
    if next(last.parameters()).is_cuda:
        last.head.cuda(torch.cuda.current_device())


def find_head(model) -> ScoringHead | None:
    """The head of a (DDP / Float16Module wrapped) chunk; None on chunks that are not the last stage."""
    m = model
    while not hasattr(m, "head"):
        if not hasattr(m, "module"):
            return None
        m = m.module
    return m.head


def flatten_choices(batch: dict, seq_length: int) -> dict:
    """A micro-batch of items ``tokens`` [m, C, S] / ``last_index`` [m, C] (absent for a token head) as the
    model's ``m * C`` rows, with positions (no attention mask: the layers' causal mask is implied)."""
    tokens = batch["tokens"]
    rows = tokens.shape[0] * tokens.shape[1]
    flat = {
        "tokens": tokens.reshape(rows, -1),
        "position_ids": torch.arange(seq_length, device=tokens.device).expand(rows, -1),
    }
    if "last_index" in batch:
        flat["last_index"] = batch["last_index"].reshape(rows)
    return flat


def head_forward(model, batch: dict) -> torch.Tensor:
    """Run a chunk on ``batch`` (tokens / position_ids / attention_mask / last_index, rows flattened): the head's
    scores ([rows, out], or [rows, S, out] for a token head) on the last stage, hidden states elsewhere."""
    head = find_head(model)
    kwargs = {}
    if head is not None:
        last_index = batch.get("last_index")

        def process(*, hidden_states, config, **_):
            return head(hidden_states, last_index, sequence_parallel=config.sequence_parallel)

        kwargs["output_processor"] = process
    return model(batch["tokens"], batch["position_ids"], batch.get("attention_mask"), **kwargs)
