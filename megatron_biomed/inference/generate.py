"""Greedy generation with a megatron-core GPTModel in one process (TP = PP = 1).

Checkpoints saved in any layout load here, since dist_checkpointing stores global tensors.
"""

from __future__ import annotations

import argparse
import sys

import torch

from megatron_biomed.config import ConfigError, ExperimentConfig, load_config


@torch.no_grad()
def greedy_generate(
    model, prompt_ids: list[int], max_new_tokens: int, eod: int | None = None, max_length: int | None = None
) -> list[int]:
    """Append the most likely next token ``max_new_tokens`` times (stops at ``eod``). Returns new ids."""
    model.eval()
    ids = list(prompt_ids)
    new: list[int] = []
    for _ in range(max_new_tokens):
        window = ids[-max_length:] if max_length else ids
        s = len(window)
        tokens = torch.tensor([window])
        position_ids = torch.arange(s).unsqueeze(0)
        mask = torch.ones(s, s, dtype=torch.bool).triu(1)[None, None]  # True = masked (future)
        logits = model(tokens, position_ids, mask)
        nxt = int(logits[0, -1].float().argmax())
        if eod is not None and nxt == eod:
            break
        ids.append(nxt)
        new.append(nxt)
    return new


def load_for_generation(cfg: ExperimentConfig, checkpoint: str):
    """Single-process model with weights from ``checkpoint`` (any saved TP/PP layout)."""
    from megatron_biomed.models.gpt import build_model_chunks
    from megatron_biomed.parallel.env import DistEnv, find_free_port
    from megatron_biomed.parallel.initialize import initialize_parallel
    from megatron_biomed.training.checkpointing import load_checkpoint

    cfg.parallel.tensor_model_parallel_size = 1
    cfg.parallel.pipeline_model_parallel_size = 1
    cfg.parallel.virtual_pipeline_model_parallel_size = None
    cfg.parallel.sequence_parallel = False
    cfg.train.global_batch_size = cfg.train.micro_batch_size
    initialize_parallel(cfg, DistEnv(0, 1, 0, "127.0.0.1", find_free_port(), "single"))
    model = build_model_chunks(cfg)[0]
    if load_checkpoint(checkpoint, [model], weights_only=True) is None:
        raise FileNotFoundError(f"{checkpoint}: no complete checkpoint (latest_checkpointed_iteration.txt missing)")
    return model


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Greedy generation from a megatron-biomed checkpoint (one process).")
    p.add_argument("--preset")
    p.add_argument("--config")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--load", required=True, help="checkpoint directory (latest complete iteration is used)")
    p.add_argument("--tokenizer", help="tokenizer directory or tokenizer.json (default: data.tokenizer)")
    p.add_argument("--prompt", action="append", required=True, help="prompt text (repeatable)")
    p.add_argument("--max-new-tokens", type=int, default=24)
    args = p.parse_args(argv)
    from megatron_biomed.training.pretrain import setup_logging

    setup_logging(0)
    try:
        cfg = load_config(args.preset, args.config, args.overrides)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    tok_dir = args.tokenizer or cfg.data.tokenizer
    if not tok_dir:
        print("error: give --tokenizer or data.tokenizer", file=sys.stderr)
        return 2
    from megatron_biomed.tokenizer import load_tokenizer

    try:
        tok = load_tokenizer(tok_dir)
    except (OSError, ValueError) as e:  # no tokenizer files there, or no <|endoftext|> token
        print(f"error: {e}", file=sys.stderr)  # the message names the path
        return 2
    model = load_for_generation(cfg, args.load)
    for prompt in args.prompt:
        ids = tok.encode(prompt)
        new = greedy_generate(model, ids, args.max_new_tokens, eod=tok.eod_id, max_length=cfg.model.seq_length)
        print(f"prompt: {prompt!r}\ngeneration: {tok.decode(new)!r}")
    return 0
