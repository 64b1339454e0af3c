"""Beam search for one prompt, as Hugging Face transformers' ``generate(num_beams=k)`` runs it (transformers 5.25
``GenerationMixin._beam_search`` with its defaults: ``length_penalty`` 1.0, ``early_stopping`` False, one
sequence returned), so that a checkpoint scores the same under our generator and theirs.

Each step scores the next token of all ``k`` running beams; the ``2k`` best continuations by summed log-probability
are kept (``_get_top_k_continuations``); those that end (the end-of-text token, or the last allowed position) and
rank among the first ``k`` become finished hypotheses, scored by their summed log-probability over their new length
to the power ``length_penalty`` (``_update_finished_beams``; the best ``k`` are kept); the best ``k`` that did not
end run on (``_get_running_beams_for_next_iteration``). The search stops when no running beam can beat the worst
finished one any more (``_check_early_stop_heuristic`` with ``early_stopping=False``: the best running score over
the current new length) or when every continuation ended. The result is the best finished hypothesis.

No key/value cache: every step runs the beams' whole prefixes (the ``k`` beams share one length, so one forward of
``[k, length]``). Meant for evaluation of small models; greedy and sampled decoding keep the cached path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

NEG = -1.0e9  # transformers' "never pick this" score


@torch.no_grad()
def beam_search(
    model,
    prompt: Sequence[int],
    num_beams: int,
    max_new_tokens: int,
    *,
    full_vocab: Callable[[torch.Tensor], torch.Tensor],
    vocab_size: int,
    eos_id: int | None = None,
    length_penalty: float = 1.0,
) -> tuple[list[int], bool]:
    """(new token ids without the end-of-text token, whether it ended with it) of the best beam of ``prompt``.
    ``full_vocab`` gathers tensor-parallel logits to the whole vocabulary; logits past ``vocab_size`` are never
    chosen."""
    device = next(model.parameters()).device
    p = len(prompt)
    k = num_beams
    keep = 2 * k  # max(2, 1 + number of eos ids) * num_beams
    total = p + max_new_tokens
    running = torch.tensor([list(prompt)] * k, dtype=torch.long, device=device)
    running_scores = torch.full((k,), NEG, device=device)
    running_scores[0] = 0.0  # one beam at first: the others would repeat it
    finished: list[tuple[float, list[int], bool]] = [(NEG, [], False)] * k  # (score, new ids, is a hypothesis)
    improvable = True
    for cur in range(p, total):
        positions = torch.arange(cur, device=device).unsqueeze(0).expand(k, -1)
        logits = full_vocab(model(running, positions, None)[:, -1, :]).float()[:, :vocab_size]
        acc = (torch.log_softmax(logits, dim=-1) + running_scores[:, None]).reshape(-1)
        top_scores, top_idx = torch.topk(acc, keep)
        beams, tokens = top_idx // vocab_size, top_idx % vocab_size
        ends = (tokens == eos_id) if eos_id is not None else torch.zeros_like(tokens, dtype=torch.bool)
        ends = ends | (cur + 1 >= total)
        cand = torch.cat([running[beams], tokens[:, None]], dim=1)
        # finished hypotheses: the first k continuations that end, length-normalised, while improvement is possible
        if improvable:
            for r in range(k):
                if bool(ends[r]):
                    score = float(top_scores[r]) / ((cur + 1 - p) ** length_penalty)
                    finished.append((score, cand[r, p:].tolist(), True))
            finished = sorted(finished, key=lambda h: -h[0])[:k]
        live = top_scores + ends.float() * NEG
        order = torch.topk(live, k).indices
        running, running_scores = cand[order], live[order]
        # _check_early_stop_heuristic (early_stopping=False): the best running score over the current new length
        all_finished = all(h[2] for h in finished)
        worst = min(h[0] for h in finished) if all_finished else NEG
        improvable = improvable and float(running_scores[0]) / ((cur + 1 - p) ** length_penalty) > worst
        if not improvable or bool(ends.all()):
            break
    ids = finished[0][1]
    if eos_id is not None and ids and ids[-1] == eos_id:
        return ids[:-1], True
    return ids, False
