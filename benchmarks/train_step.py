"""Training-step throughput of our Trainer against bare megatron-core and plain PyTorch, on CPU.

One process, one thread, the same GPT shape in all three (tiny-biomedlm scaled up: GPT-2 style, learned
positions, LayerNorm, tanh-GELU, tied embeddings, fp32, no dropout):

  (a) ours:  megatron_biomed.training.loop.Trainer, timed through its own ``train()`` loop (metrics,
             logging, preemption check and loss all-reduce included), mock data through MicroBatchIterator;
  (b) bare:  megatron-core alone, the loop of its examples: GPTModel (local spec) + DDP +
             get_megatron_optimizer + get_forward_backward_func, batches already in memory;
  (c) plain: our own nn.Module of the same shape and FLOPs with torch.optim.AdamW and grad clipping,
             with SDPA attention, and again with unfused attention (what megatron-core's local spec runs).

(a) and (b) need megatron_biomed.parallel.cpu.apply_cpu_patches(); (c) runs with the patches' torch
function mode popped, so it is the plain PyTorch speed. The variants take turns in rounds (the order
rotates) so that a busy neighbour on a shared machine slows all of them alike. The first ``--warmup``
steps of each are dropped; the table shows the median step time over the rest, as wall time and as CPU
time of the process (steadier when other jobs share the cores).

    OMP_NUM_THREADS=1 python benchmarks/train_step.py [--hidden 256 --layers 4 --seq 256 --batch 4]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import contextlib
import functools
import math
import socket
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--batch", type=int, default=4, help="sequences per step (one micro-batch)")
    p.add_argument("--vocab", type=int, default=512)
    p.add_argument("--warmup", type=int, default=3, help="steps of each variant dropped before timing")
    p.add_argument("--steps", type=int, default=5, help="timed steps of each variant per round")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--only", default="",
                   help="comma-separated subset of: ours,bare,plain,plain_unfused,plain_patched (default: all)")
    return p.parse_args(argv)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def experiment(args):
    """tiny-biomedlm with the benchmark's shape; one micro-batch per step."""
    from megatron_biomed.config import load_config

    return load_config("tiny-biomedlm", overrides=[
        f"model.hidden_size={args.hidden}", f"model.num_layers={args.layers}",
        f"model.num_attention_heads={args.heads}", f"model.seq_length={args.seq}",
        f"model.vocab_size={args.vocab}", "model.hidden_dropout=0.0", "model.attention_dropout=0.0",
        f"train.micro_batch_size={args.batch}", f"train.global_batch_size={args.batch}",
        # Enough samples for every round; the benchmark moves train_iters forward chunk by chunk.
        f"train.train_iters={args.warmup + (args.steps + 1) * args.rounds + 10}",
        "train.eval_iters=0", "train.precision=fp32", "data.mock=true",
    ])


# --- (a) ours ------------------------------------------------------------------------------------------

class Ours:
    """The project's Trainer, run ``n`` iterations at a time through ``Trainer.train()``."""

    name = "ours (Trainer)"

    def __init__(self, cfg, port: int):
        from megatron_biomed.data.gpt_dataset import TokenInfo
        from megatron_biomed.parallel.env import DistEnv
        from megatron_biomed.parallel.initialize import initialize_parallel
        from megatron_biomed.training.loop import Trainer

        self.cfg = cfg
        env = DistEnv(rank=0, world_size=1, local_rank=0, master_addr="127.0.0.1", master_port=port, launcher="single")
        ctx = initialize_parallel(cfg, env)
        self.trainer = Trainer(cfg, ctx, TokenInfo(vocab_size=cfg.model.vocab_size, eod=cfg.model.vocab_size - 1))
        # Each iteration's time is the gap between consecutive train_step() starts: the whole loop body.
        self._starts: list[tuple[float, float]] = []
        inner = self.trainer.train_step

        def timed_train_step(*a, **kw):
            self._starts.append(clocks())
            return inner(*a, **kw)

        self.trainer.train_step = timed_train_step

    def parameters(self):
        return (p for chunk in self.trainer.model for p in chunk.parameters())

    def run(self, n: int) -> list[tuple[float, float]]:
        self._starts = []
        self.cfg.train.train_iters = self.trainer.state.iteration + n + 1
        self.trainer.train()
        return [(b[0] - a[0], b[1] - a[1]) for a, b in zip(self._starts, self._starts[1:])][:n]


# --- (b) bare megatron-core ----------------------------------------------------------------------------

class Bare:
    """megatron-core's own pieces only, configured for CPU the way any megatron-core user must."""

    name = "bare megatron-core"

    def __init__(self, cfg):
        from megatron.core.distributed import (
            DistributedDataParallel,
            DistributedDataParallelConfig,
            finalize_model_grads,
        )
        from megatron.core.models.gpt import GPTModel
        from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
        from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer
        from megatron.core.pipeline_parallel import get_forward_backward_func
        from megatron.core.transformer.transformer_config import TransformerConfig

        m, t = cfg.model, cfg.train
        self.seq, self.mbs = m.seq_length, t.micro_batch_size
        tc = TransformerConfig(
            num_layers=m.num_layers, hidden_size=m.hidden_size, num_attention_heads=m.num_attention_heads,
            ffn_hidden_size=m.ffn_size, hidden_dropout=0.0, attention_dropout=0.0,
            activation_func=functools.partial(F.gelu, approximate="tanh"), add_bias_linear=True,
            normalization="LayerNorm", layernorm_epsilon=m.layernorm_epsilon, init_method_std=m.init_method_std,
            # CPU: no CUDA init, no fused CUDA kernels.
            use_cpu_initialization=True, gradient_accumulation_fusion=False, bias_activation_fusion=False,
            bias_dropout_fusion=False, masked_softmax_fusion=False, persist_layer_norm=False,
            batch_p2p_sync=False,
        )
        model = GPTModel(
            config=tc, transformer_layer_spec=get_gpt_layer_local_spec(), vocab_size=m.padded_vocab_size(1),
            max_sequence_length=m.seq_length, pre_process=True, post_process=True,
            share_embeddings_and_output_weights=True, position_embedding_type="learned_absolute",
        )
        self.model = DistributedDataParallel(config=tc, ddp_config=DistributedDataParallelConfig(), module=model)
        o = cfg.optimizer
        self.optimizer = get_megatron_optimizer(
            OptimizerConfig(optimizer="adam", lr=o.lr, weight_decay=0.1, adam_beta1=o.adam_beta1,
                            adam_beta2=o.adam_beta2, adam_eps=o.adam_eps, clip_grad=o.clip_grad),
            [self.model],
        )
        tc.finalize_model_grads_func = finalize_model_grads
        tc.grad_scale_func = self.optimizer.scale_loss
        tc.no_sync_func = self.model.no_sync
        self.fb = get_forward_backward_func()
        g = torch.Generator().manual_seed(0)
        data = torch.randint(0, m.vocab_size, (self.mbs, self.seq + 1), generator=g)
        self.batch = {
            "tokens": data[:, :-1].contiguous(),
            "labels": data[:, 1:].contiguous(),
            "position_ids": torch.arange(self.seq).unsqueeze(0).expand(self.mbs, -1),
            # megatron-core builds the default causal mask on "cuda"; masked positions are True.
            "attention_mask": torch.triu(torch.ones(1, 1, self.seq, self.seq, dtype=torch.bool), diagonal=1),
            "loss_mask": torch.ones(self.mbs, self.seq),
        }

    def _forward_step(self, data_iterator, model):
        b = self.batch

        def loss_func(output):
            loss = (output.float().view(-1) * b["loss_mask"].view(-1)).sum() / b["loss_mask"].sum()
            return loss, {"lm loss": loss.detach()}

        return model(b["tokens"], b["position_ids"], b["attention_mask"], labels=b["labels"]), loss_func

    def parameters(self):
        return self.model.parameters()

    def step(self) -> None:
        self.model.zero_grad_buffer()
        self.optimizer.zero_grad()
        self.fb(forward_step_func=self._forward_step, data_iterator=None, model=self.model, num_microbatches=1,
                seq_length=self.seq, micro_batch_size=self.mbs, forward_only=False)
        self.optimizer.step()

    def run(self, n: int) -> list[tuple[float, float]]:
        return timed_steps(self.step, n)


# --- (c) plain PyTorch ---------------------------------------------------------------------------------

class Block(nn.Module):
    def __init__(self, h: int, heads: int, ffn: int, eps: float, sdpa: bool):
        super().__init__()
        self.heads, self.sdpa = heads, sdpa
        self.ln1, self.ln2 = nn.LayerNorm(h, eps=eps), nn.LayerNorm(h, eps=eps)
        self.qkv, self.proj = nn.Linear(h, 3 * h), nn.Linear(h, h)
        self.fc1, self.fc2 = nn.Linear(h, ffn), nn.Linear(ffn, h)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        b, s, h = x.shape
        q, k, v = self.qkv(x).view(b, s, 3, self.heads, h // self.heads).permute(2, 0, 3, 1, 4)
        if self.sdpa:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(h // self.heads)
            mask = torch.ones(s, s, dtype=torch.bool).triu_(1)
            y = torch.softmax(scores.masked_fill(mask, float("-inf")), dim=-1) @ v
        return self.proj(y.transpose(1, 2).reshape(b, s, h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.ln1(x))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x)), approximate="tanh"))


class PlainGPT(nn.Module):
    """GPT-2 style decoder with tied embeddings: the same parameters and matmuls as the GPTModel above."""

    def __init__(self, m, sdpa: bool):
        super().__init__()
        h = m.hidden_size
        self.wte, self.wpe = nn.Embedding(m.padded_vocab_size(1), h), nn.Embedding(m.seq_length, h)
        self.blocks = nn.ModuleList(Block(h, m.num_attention_heads, m.ffn_size, m.layernorm_epsilon, sdpa)
                                    for _ in range(m.num_layers))
        self.ln_f = nn.LayerNorm(h, eps=m.layernorm_epsilon)
        for p in self.parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=m.init_method_std)

    def forward(self, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = self.wte(tokens) + self.wpe(torch.arange(tokens.shape[1]))
        for blk in self.blocks:
            x = blk(x)
        logits = self.ln_f(x) @ self.wte.weight.t()
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.reshape(-1))


class Plain:
    def __init__(self, cfg, sdpa: bool, under_cpu_patches: bool = False):
        self.name = "plain PyTorch (SDPA)" if sdpa else "plain PyTorch (unfused attn)"
        # Under the CPU patches: what the compatibility layer's torch function mode costs by itself.
        self.under_cpu_patches = under_cpu_patches
        if under_cpu_patches:
            self.name += " + cpu patches"
        m, o, t = cfg.model, cfg.optimizer, cfg.train
        torch.manual_seed(0)
        self.model = PlainGPT(m, sdpa)
        self.clip = o.clip_grad
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=o.lr, betas=(o.adam_beta1, o.adam_beta2),
                                           eps=o.adam_eps, weight_decay=0.1)
        data = torch.randint(0, m.vocab_size, (t.micro_batch_size, m.seq_length + 1),
                             generator=torch.Generator().manual_seed(0))
        self.tokens, self.labels = data[:, :-1].contiguous(), data[:, 1:].contiguous()

    def parameters(self):
        return self.model.parameters()

    def step(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.model(self.tokens, self.labels).backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.optimizer.step()

    def run(self, n: int) -> list[tuple[float, float]]:
        # The CPU patches push a torch function mode that sees every op; plain PyTorch runs without it.
        with contextlib.nullcontext() if self.under_cpu_patches else without_cpu_function_mode():
            return timed_steps(self.step, n)


@contextlib.contextmanager
def without_cpu_function_mode():
    from torch.overrides import _pop_mode_temporarily

    if torch._C._len_torch_function_stack() == 0:
        yield
        return
    with _pop_mode_temporarily():
        yield


def clocks() -> tuple[float, float]:
    """(wall, CPU) seconds. CPU time of this process is the steadier number on a shared machine: time
    spent descheduled by a neighbour's job does not count."""
    return time.perf_counter(), time.process_time()


def timed_steps(step, n: int) -> list[tuple[float, float]]:
    """(wall, CPU) seconds of each of ``n`` calls of ``step``."""
    times = []
    for _ in range(n):
        w, c = clocks()
        step()
        w2, c2 = clocks()
        times.append((w2 - w, c2 - c))
    return times


# --- main ----------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("megatron").setLevel(logging.ERROR)
    cfg = experiment(args)
    wanted = set(filter(None, args.only.split(","))) or {"ours", "bare", "plain", "plain_unfused", "plain_patched"}

    variants = {}
    if "ours" in wanted:
        variants["ours"] = Ours(cfg, free_port())  # starts the process group and megatron-core's state
    if "bare" in wanted:
        if "ours" not in wanted:
            from megatron_biomed.parallel.env import DistEnv
            from megatron_biomed.parallel.initialize import initialize_parallel

            initialize_parallel(cfg, DistEnv(0, 1, 0, "127.0.0.1", free_port(), "single"))
        variants["bare"] = Bare(cfg)
    if "plain" in wanted:
        variants["plain"] = Plain(cfg, sdpa=True)
    if "plain_unfused" in wanted:
        variants["plain_unfused"] = Plain(cfg, sdpa=False)
    if "plain_patched" in wanted:
        from megatron_biomed.parallel import cpu

        cpu.apply_cpu_patches()
        variants["plain_patched"] = Plain(cfg, sdpa=False, under_cpu_patches=True)

    m = cfg.model
    from megatron_biomed.models.registry import count_parameters

    print(f"GPT: {m.num_layers} layers, hidden {m.hidden_size}, {m.num_attention_heads} heads, seq {m.seq_length}, "
          f"vocab {m.padded_vocab_size(1)}, {count_parameters(m).total / 1e6:.2f}M parameters; batch {args.batch}; "
          f"{torch.get_num_threads()} thread(s); torch {torch.__version__}")
    # Same shape means the same parameters (and so the same matmuls): checked, not assumed.
    sizes = {k: sum(p.numel() for p in v.parameters()) for k, v in variants.items()}
    print("parameters: " + ", ".join(f"{variants[k].name} {n:,}" for k, n in sizes.items()))
    if len(set(sizes.values())) > 1:
        print("error: the variants differ in parameter count", file=sys.stderr)
        return 1
    for v in variants.values():
        v.run(args.warmup)
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}
    keys = list(variants)
    for r in range(args.rounds):
        order = keys[r % len(keys):] + keys[: r % len(keys)]
        for k in order:
            times[k] += variants[k].run(args.steps)

    tokens = args.batch * args.seq
    wall = {k: [w for w, _ in t] for k, t in times.items()}
    cpu = {k: [c for _, c in t] for k, t in times.items()}
    tps = {k: tokens / statistics.median(t) for k, t in wall.items()}
    tpc = {k: tokens / statistics.median(t) for k, t in cpu.items()}
    print(f"\n{'variant':<42} {'step ms':>8} {'p25-p75':>10} {'tokens/s':>9} {'tokens/CPU-s':>13} {'steps':>6}")
    for k in times:
        q = statistics.quantiles(wall[k], n=4)
        print(f"{variants[k].name:<42} {1e3 * statistics.median(wall[k]):>8.1f} {1e3 * q[0]:>4.0f}-{1e3 * q[2]:<5.0f} "
              f"{tps[k]:>9.0f} {tpc[k]:>13.0f} {len(wall[k]):>6}")
    print("(step ms, tokens/s: median wall time per step; tokens/CPU-s: from the median CPU time per step)")
    if "ours" in tps:
        print(f"\n{'ratio':<48} {'tokens/s':>9} {'tokens/CPU-s':>13}")
        for base in ("bare", "plain", "plain_unfused"):
            if base in tps:
                print(f"{'ours / ' + variants[base].name:<48} {tps['ours'] / tps[base]:>9.3f} "
                      f"{tpc['ours'] / tpc[base]:>13.3f}")
    return 0

if __name__ == "__main__":
    sys.exit(main())
