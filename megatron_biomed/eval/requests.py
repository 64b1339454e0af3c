"""Log-likelihood requests as fixed-length samples, lm-evaluation-harness's conventions.

* A continuation's log-likelihood given a context is the sum of its tokens' log-probs. Trailing whitespace
  of the context moves to the start of the continuation before tokenising; an empty context is the
  end-of-document token. The two are tokenised separately and joined, and a sequence longer than the model's
  context keeps its end. (lm-evaluation-harness takes the continuation's tokens from the encoding of the
  whole text past the context's own tokens; with a byte-level BPE, whose pre-tokenizer splits before a space,
  the two agree whenever the continuation starts with whitespace, as every benchmark choice does.)
* A document's log-likelihood (perplexity) is rolling: the document, after one end-of-document token, is cut
  into windows of ``seq_length`` scored tokens; each window sees as much preceding text as fits (the last,
  shorter window is extended to the left), and every token is scored exactly once. With a ``stride`` smaller
  than ``seq_length`` each window scores only its last ``stride`` tokens (a sliding window: more context per
  token, more compute).
"""

from __future__ import annotations

import torch


def split_whitespace(context: str, continuation: str) -> tuple[str, str]:
    """Move the context's trailing whitespace to the front of the continuation."""
    stripped = context.rstrip()
    return stripped, context[len(stripped) :] + continuation


def window(full: list[int], begin: int, end: int, seq_length: int, pad_id: int) -> dict:
    """The sample scoring labels ``full[begin+1 : end+1]`` (i.e. predictions at positions ``begin..end-1``) with
    up to ``seq_length`` positions of input ending at position ``end - 1``."""
    start = max(0, end - seq_length)
    inputs = full[start:end]
    labels = full[start + 1 : end + 1]
    mask = [1.0 if start + i >= begin else 0.0 for i in range(len(inputs))]
    pad = seq_length - len(inputs)
    return {
        "tokens": torch.tensor(inputs + [pad_id] * pad),
        "labels": torch.tensor(labels + [pad_id] * pad),
        "loss_mask": torch.tensor(mask + [0.0] * pad),
        "position_ids": torch.arange(seq_length),
    }


def continuation_sample(tok, context: str, continuation: str, seq_length: int, eod: int) -> dict:
    """Sample scoring ``continuation`` after ``context`` (the continuation must fit in ``seq_length``)."""
    context, continuation = split_whitespace(context, continuation)
    ctx = tok.encode(context) if context else [eod]
    cont = tok.encode(continuation)
    if not cont:
        raise ValueError(f"empty continuation after {context[-40:]!r}")
    if len(cont) > seq_length:
        raise ValueError(f"a continuation of {len(cont)} tokens does not fit the model's {seq_length}")
    full = ctx + cont
    n = len(full) - 1  # predictions
    return window(full, n - len(cont), n, seq_length, eod)


def rolling_samples(ids: list[int], seq_length: int, eod: int, stride: int | None = None) -> list[dict]:
    """Windows that score every token of a document once (see the module's docstring)."""
    stride = stride or seq_length
    if not 0 < stride <= seq_length:
        raise ValueError(f"stride {stride} must be in 1..seq_length ({seq_length})")
    full = [eod] + list(ids)
    n = len(full) - 1
    out = []
    begin = 0
    while begin < n:
        size = seq_length if begin == 0 else stride
        end = min(begin + size, n)
        out.append(window(full, begin, end, seq_length, eod))
        begin = end
    return out


def shared_prompt_samples(tok, context: str, continuations: list[str], seq_length: int, eod: int,
                          width: int, share_prompt: bool = True) -> list[dict]:  # fmt: skip
    """The continuations of one prompt scored in one sequence, the prompt computed once.

    Layout: ``prompt[:-1] | prompt[-1] cont_0 | prompt[-1] cont_1 | ...``: each segment repeats the prompt's
    last token (whose output predicts the continuation's first token), continues the prompt's positions, and
    attends to the shared prompt and to itself only, so each continuation's log-probs are those of
    ``prompt + continuation`` alone. Each sample has ``loss_mask`` [width, S] (one row per continuation) and
    ``segment_ids`` [S] (0 prompt, k + 1 continuation k, -1 padding). When the packed sequence does not fit,
    or the model cannot share a prompt between segments (``share_prompt`` False: a model without attention,
    models/registry.py ``SegmentIsolation``), one sample per continuation (the usual left-truncated sequence)
    with its row of the mask set.
    """
    pairs = [split_whitespace(context, c) for c in continuations]
    ctx_text = pairs[0][0]
    ctx = tok.encode(ctx_text) if ctx_text else [eod]
    conts = [tok.encode(c) for _, c in pairs]
    if any(not c for c in conts):
        raise ValueError(f"empty continuation after {context[-40:]!r}")
    packed_len = len(ctx) - 1 + sum(len(c) + 1 for c in conts)
    if share_prompt and all(p[0] == ctx_text for p in pairs) and packed_len <= seq_length:
        tokens, labels, seg, pos = list(ctx[:-1]), list(ctx[1:]), [0] * (len(ctx) - 1), list(range(len(ctx) - 1))
        masks = []
        for k, c in enumerate(conts):
            start = len(tokens)
            seg_tokens = [ctx[-1]] + c[:-1]
            tokens += seg_tokens
            labels += c
            seg += [k + 1] * len(seg_tokens)
            pos += list(range(len(ctx) - 1, len(ctx) - 1 + len(seg_tokens)))
            masks.append((start, start + len(seg_tokens)))
        pad = seq_length - len(tokens)
        loss_mask = torch.zeros(width, seq_length)
        for k, (a, b) in enumerate(masks):
            loss_mask[k, a:b] = 1.0
        return [{
            "tokens": torch.tensor(tokens + [eod] * pad),
            "labels": torch.tensor(labels + [eod] * pad),
            "loss_mask": loss_mask,
            "position_ids": torch.tensor(pos + list(range(pad))),
            "segment_ids": torch.tensor(seg + [-1] * pad),
        }]  # fmt: skip
    out = []
    for k, cont in enumerate(continuations):
        s = continuation_sample(tok, context, cont, seq_length, eod)
        mask = torch.zeros(width, seq_length)
        mask[k] = s.pop("loss_mask")
        out.append(s | {"loss_mask": mask, "segment_ids": torch.zeros(seq_length, dtype=torch.long)})
    return out


def segment_attention_mask(segment_ids: torch.Tensor) -> torch.Tensor:
    """[b, 1, S, S] bool, True = masked: causal; a continuation segment sees the prompt (segment 0) and itself;
    padding sees only itself."""
    s = segment_ids.shape[-1]
    causal = torch.ones(s, s, dtype=torch.bool, device=segment_ids.device).tril()
    q, k = segment_ids[:, :, None], segment_ids[:, None, :]
    allowed = causal & ((k == 0) | (k == q))
    eye = torch.eye(s, dtype=torch.bool, device=segment_ids.device)
    allowed = torch.where((q < 0), eye.expand_as(allowed), allowed & (k >= 0))
    return (~allowed)[:, None]
