"""Text generation with megatron-core GPTModels: a key/value cache, greedy or sampled decoding, batched
prompts of different lengths, eos and stop strings, streaming (``tools/generate.py``).

Each step after the first feeds one token per sequence: the keys and values of earlier positions live in
megatron-core's ``StaticInferenceContext`` (its per-layer KV memory), so a new token costs one token's
forward, not the prefix's. Prompts of different lengths share positions: the first forward covers the
shortest prompt, and at each later position a sequence whose prompt is not used up is given its own prompt
token instead of the sampled one (Megatron's static-batching rule) -- so every sequence is decoded exactly as
it would be alone, with no padding mask. Every input tensor is made on the model's device, and the decoding
state (eos, counts, done) stays there: the host waits for the device every ``STOP_CHECK_EVERY`` tokens and at
the end, or every token only where streaming or stop strings need each token on the host.

Runs on one process or with tensor parallelism over several ranks (logits gathered over TP, every rank samples
the same token from the same seed); pipeline parallelism is not supported here (load at PP = 1: dist
checkpoints of any layout load so).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from megatron.core import parallel_state as ps
from megatron.core import tensor_parallel
from megatron.core.inference.contexts import StaticInferenceContext

from megatron_biomed.checkpoint import run_experiment_config
from megatron_biomed.config.experiment import ExperimentConfig
from megatron_biomed.config.loading import apply_overrides
from megatron_biomed.errors import BiomedError
from megatron_biomed.inference.beam import beam_search
from megatron_biomed.inference.forward import model_device
from megatron_biomed.inference.loading import load_model_chunks
from megatron_biomed.parallel.env import DistEnv
from megatron_biomed.parallel.initialize import set_model_only_layout
from megatron_biomed.tokenizer import load_run_tokenizer
from megatron_biomed.training.launch import load_run_config, parallel_session, run_main, start, validate_run_config

# Without streaming or stop strings the host asks "is every sequence done?" every this many tokens (one read),
# not every token; the few tokens decoded after the last one ended are dropped.
STOP_CHECK_EVERY = 8


class SamplingError(BiomedError, ValueError):
    """Sampling settings that cannot be used (a negative count or temperature, top_p outside (0, 1])."""


@dataclass
class SamplingConfig:
    """How the next token is chosen; the names are tools/generate.py's flags. ``temperature`` 0 = greedy."""

    max_new_tokens: int = 32
    temperature: float = 0.0
    top_k: int = 0  # 0 = no top-k cut
    top_p: float = 1.0  # 1 = no nucleus cut
    seed: int = 1234
    stop_strings: Sequence[str] = ()
    num_beams: int = 1  # > 1: beam search (inference/beam.py, transformers' generate(num_beams=...)), no cache

    def __post_init__(self) -> None:
        if self.max_new_tokens < 0 or self.temperature < 0 or self.top_k < 0 or not 0 < self.top_p <= 1:
            raise SamplingError(
                f"sampling: max_new_tokens={self.max_new_tokens}, temperature={self.temperature} and "
                f"top_k={self.top_k} must be >= 0 and top_p={self.top_p} in (0, 1]"
            )
        if self.num_beams < 1:
            raise SamplingError(f"sampling: num_beams={self.num_beams} must be >= 1")
        if self.num_beams > 1 and (not self.greedy or self.stop_strings):
            raise SamplingError(f"sampling: num_beams={self.num_beams} is beam search; it takes neither "
                                f"temperature={self.temperature} / top_k={self.top_k} sampling nor stop strings")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0 or self.top_k == 1


@dataclass
class Generation:
    """One prompt's result: the new token ids, their text (cut before a stop string), and why it ended
    ("eos", "stop" or "length")."""

    prompt_ids: list[int]
    ids: list[int] = field(default_factory=list)
    text: str = ""
    finish_reason: str = "length"


def next_tokens(logits: torch.Tensor, s: SamplingConfig, generator: torch.Generator | None) -> torch.Tensor:
    """Token ids ``[b]`` chosen from next-token ``logits`` ``[b, vocab]`` (fp32) by ``s``."""
    if s.greedy:
        return logits.argmax(dim=-1)
    logits = logits / s.temperature
    if s.top_k:
        kth = torch.topk(logits, min(s.top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if s.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = sorted_logits.softmax(dim=-1)
        drop = probs.cumsum(dim=-1) - probs > s.top_p  # keep the smallest prefix reaching top_p (>= 1 token)
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return torch.multinomial(logits.softmax(dim=-1), 1, generator=generator).squeeze(-1)


def _full_vocab(logits: torch.Tensor) -> torch.Tensor:
    if ps.model_parallel_is_initialized() and ps.get_tensor_model_parallel_world_size() > 1:
        return tensor_parallel.gather_from_tensor_model_parallel_region(logits)
    return logits


@torch.no_grad()
def generate(
    model,
    prompts: Sequence[Sequence[int]],
    sampling: SamplingConfig,
    *,
    vocab_size: int,
    max_length: int,
    eos_id: int | None = None,
    decode: Callable[[list[int]], str] | None = None,
    use_cache: bool = True,
    on_token: Callable[[int, int], None] | None = None,
    keep_logits: list | None = None,
) -> list[Generation]:
    """Continue each prompt (token ids) of the batch by up to ``sampling.max_new_tokens`` tokens.

    ``vocab_size``: logits past it (Megatron's padding) are never chosen. ``max_length``: prompt + new tokens
    never pass it (the model's positions). ``decode`` turns ids into text (needed for stop strings and
    ``Generation.text``). ``use_cache=False`` runs the whole prefix every step (the reference for the cache).
    ``on_token(i, id)`` is called for each new token of prompt i as it is chosen (streaming).
    ``keep_logits``, a list, receives each step's next-token logits ``[b, vocab]``."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("generate: every prompt needs at least one token")
    model.eval()
    if sampling.num_beams > 1:
        return [_beam_generation(model, p, sampling, vocab_size, max_length, eos_id, decode) for p in prompts]
    device = model_device([model])
    b = len(prompts)
    longest, shortest = max(len(p) for p in prompts), min(len(p) for p in prompts)
    if longest >= max_length:
        raise ValueError(f"generate: a prompt of {longest} tokens leaves no room under {max_length}")
    total = min(longest + sampling.max_new_tokens, max_length)
    host_tokens = torch.zeros(b, total, dtype=torch.long)
    for i, p in enumerate(prompts):
        host_tokens[i, : len(p)] = torch.tensor(list(p), dtype=torch.long)
    tokens = host_tokens.to(device)
    lengths = torch.tensor([len(p) for p in prompts], device=device)
    results = [Generation(prompt_ids=list(p)) for p in prompts]
    generator = None
    if not sampling.greedy:
        generator = torch.Generator(device=device).manual_seed(sampling.seed)
    context = StaticInferenceContext(b, total) if use_cache else None
    # The decoding state lives on the device: which positions hold a new token, which sequences met eos, which
    # are done. The host reads it every STOP_CHECK_EVERY tokens (all done?) and once at the end -- or every token
    # where the caller needs each token on the host (streaming, stop strings).
    appended = torch.zeros(b, total, dtype=torch.bool, device=device)
    ended_eos = torch.zeros(b, dtype=torch.bool, device=device)
    count = torch.zeros(b, dtype=torch.long, device=device)
    done = torch.full((b,), sampling.max_new_tokens == 0, dtype=torch.bool, device=device)
    per_token = on_token is not None or bool(sampling.stop_strings and decode is not None)
    texts: list[list[int]] = [[] for _ in prompts]  # the new ids so far, with ``per_token``
    running: list[torch.Tensor] = []  # per step: was any sequence still going (trims keep_logits at the end)
    kept_before = len(keep_logits) if keep_logits is not None else 0
    start = 0
    for cur in range(shortest, total):
        if sampling.max_new_tokens == 0:
            break
        if not per_token and (cur - shortest) % STOP_CHECK_EVERY == 0 and cur > shortest and bool(done.all()):
            break
        running.append(~done.all())
        first = start if use_cache else 0
        window = tokens[:, first:cur]
        positions = torch.arange(first, cur, device=device).unsqueeze(0).expand(b, -1)
        logits = model(window, positions, None, inference_context=context)
        if context is not None:
            context.sequence_len_offset += cur - first
        step = _full_vocab(logits[:, -1, :]).float()[:, :vocab_size]
        if keep_logits is not None:
            keep_logits.append(step.clone())
        chosen = next_tokens(step, sampling, generator)
        in_prompt = cur < lengths
        tokens[:, cur] = torch.where(in_prompt, tokens[:, cur], chosen)
        start = cur
        active = ~in_prompt & ~done
        is_eos = tokens[:, cur] == eos_id if eos_id is not None else torch.zeros_like(active)
        appended[:, cur] = active & ~is_eos
        ended_eos |= active & is_eos
        count += appended[:, cur].long()
        done |= ended_eos | (count >= sampling.max_new_tokens)
        if per_token:
            new, added, finished = torch.stack([tokens[:, cur], appended[:, cur].long(), done.long()]).tolist()
            for i in range(b):
                if added[i] and _stream_token(results[i], texts[i], new[i], sampling, decode, on_token, i):
                    done[i] = True  # a stop string: this sequence ends here
                    finished[i] = 1
            if all(finished):
                break
    # The end: one read of the whole state.
    state = [tokens.flatten(), appended.flatten().long(), ended_eos.long()]
    state += [torch.stack(running).long()] if running else []
    flat = torch.cat(state).tolist()
    n = b * total
    ids = [flat[i * total : (i + 1) * total] for i in range(b)]
    added = [flat[n + i * total : n + (i + 1) * total] for i in range(b)]
    eos_flags, alive = flat[2 * n : 2 * n + b], flat[2 * n + b :]
    if keep_logits is not None:  # the steps taken after every sequence was done (between two checks) dropped
        del keep_logits[kept_before + sum(alive) :]
    for i, r in enumerate(results):
        r.ids = [t for t, a in zip(ids[i], added[i]) if a]
        if r.finish_reason != "stop":
            r.finish_reason = "eos" if eos_flags[i] else "length"
    for r in results:
        if decode is not None and r.finish_reason != "stop":
            r.text = decode(r.ids)
    return results


def _beam_generation(model, prompt, s: SamplingConfig, vocab_size, max_length, eos_id, decode) -> Generation:
    new = min(s.max_new_tokens, max_length - len(prompt))
    if new <= 0:
        raise ValueError(f"generate: a prompt of {len(prompt)} tokens leaves no room under {max_length}")
    ids, ended = beam_search(model, prompt, s.num_beams, new, full_vocab=_full_vocab, vocab_size=vocab_size,
                             eos_id=eos_id)  # fmt: skip
    g = Generation(prompt_ids=list(prompt), ids=ids, finish_reason="eos" if ended else "length")
    g.text = decode(ids) if decode is not None else ""
    return g


def _stream_token(r: Generation, so_far: list[int], token: int, s: SamplingConfig, decode, on_token, i: int) -> bool:
    """A new token of prompt ``i`` (not eos) on the host: streamed, and checked for a stop string (True: one
    ended the sequence; ``r.text`` is cut before it)."""
    so_far.append(token)
    if on_token is not None:
        on_token(i, token)
    if s.stop_strings and decode is not None:
        text = decode(so_far)
        hits = [text.index(stop) for stop in s.stop_strings if stop in text]
        if hits:
            r.text, r.finish_reason = text[: min(hits)], "stop"
            return True
    return False


def greedy_generate(
    model, prompt_ids: list[int], max_new_tokens: int, eod: int | None = None, max_length: int | None = None
) -> list[int]:
    """Greedy continuation of one prompt (the new ids; stops at ``eod``), with the KV cache."""
    vocab = model_vocab_size(model)
    limit = max_length or len(prompt_ids) + max_new_tokens + 1
    out = generate(
        model, [prompt_ids], SamplingConfig(max_new_tokens=max_new_tokens), vocab_size=vocab,
        max_length=limit, eos_id=eod,
    )  # fmt: skip
    return out[0].ids


def model_vocab_size(model) -> int:
    """Output width of the model (padded vocabulary) when nothing better is known."""
    inner = getattr(model, "module", model)
    return inner.vocab_size


def build_arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Generate text from a megatron-biomed checkpoint (one process, or TP ranks under torchrun)."
    )
    p.add_argument("--load", required=True, help="checkpoint directory (latest complete iteration is used)")
    p.add_argument("--preset", help="model config (default: the checkpoint's run_config.yaml)")
    p.add_argument("--config")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--tokenizer", help="tokenizer directory or tokenizer.json (default: data.tokenizer)")
    p.add_argument("--prompt", action="append", required=True, help="prompt text (repeatable: one batch)")
    p.add_argument("--weights", choices=["model", "ema"], default="model",
                   help="the checkpoint's weights: the model's, or their moving average (optimizer.ema_decay)")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    p.add_argument("--no-cache", action="store_true", help="recompute the prefix every step (slow; a check)")
    p.add_argument("--stream", action="store_true", help="print tokens as they come (one prompt)")
    return p


def main(argv=None) -> int:
    args = build_arg_parser().parse_args(argv)
    return run_main(lambda: generate_from_checkpoint(args))


def generation_config(args) -> ExperimentConfig:
    """The model of ``--preset`` / ``--config`` (with ``--set``), or the checkpoint's recorded config (with
    ``--set``)."""
    if args.preset or args.config:
        return load_run_config(args.preset, args.config, args.overrides)
    recorded = run_experiment_config(args.load)[1]
    return validate_run_config(apply_overrides(recorded, args.overrides)) if args.overrides else recorded


def tensor_parallel_over_the_world(cfg: ExperimentConfig, env: DistEnv) -> None:
    """One model split over every rank by tensor parallelism (PP = 1: generation does not pipeline)."""
    set_model_only_layout(cfg, tensor_model_parallel_size=env.world_size)


def generate_from_checkpoint(args) -> int:
    """tools/generate.py: every check before the process group, then the model of the checkpoint on one process
    or TP ranks, then the generations printed by rank 0."""
    sampling = SamplingConfig(args.max_new_tokens, args.temperature, args.top_k, args.top_p, args.seed, args.stop)
    cfg = generation_config(args)
    tok = load_run_tokenizer(cfg, args.tokenizer)
    env = start(cfg, tensor_parallel_over_the_world)
    with parallel_session(cfg, env):
        model = load_model_chunks(cfg, args.load, weights_from=args.weights)[0]
        printing = env.rank == 0
        streamed: list[int] = []
        shown = [""]

        def stream(i: int, token: int) -> None:  # prompt 0's text so far, printed as it grows
            streamed.append(token)
            text = tok.decode(streamed)
            if printing:
                print(text[len(shown[0]) :], end="", flush=True)
            shown[0] = text

        ids = [tok.encode(prompt) for prompt in args.prompt]
        if args.stream and printing:
            print(args.prompt[0], end="", flush=True)
        out = generate(
            model, ids, sampling, vocab_size=cfg.model.vocab_size, max_length=cfg.model.seq_length,
            eos_id=tok.eod_id, decode=tok.decode, use_cache=not args.no_cache,
            on_token=stream if args.stream and len(ids) == 1 else None,
        )  # fmt: skip
        if printing:
            if args.stream and len(ids) == 1:
                print()
            else:
                for prompt, g in zip(args.prompt, out):
                    print(f"prompt: {prompt!r}\ngeneration: {g.text!r} ({g.finish_reason})")
    return 0
