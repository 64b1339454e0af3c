"""Search the layouts of a run on a cluster: estimate memory and step time of each candidate, keep those that
fit, rank them by predicted time, print the table and the chosen layout as --set flags."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from megatron_biomed.config.experiment import ExperimentConfig
from megatron_biomed.models.registry import get_family
from megatron_biomed.planning.hardware import Cluster, GiB
from megatron_biomed.planning.layouts import Layout
from megatron_biomed.planning.memory import MemoryEstimate, estimate_memory
from megatron_biomed.planning.terms import terms_for
from megatron_biomed.planning.timing import StepTime, estimate_step_time


@dataclass
class Plan:
    """One layout with its memory and time estimates."""

    layout: Layout
    memory: MemoryEstimate
    time: StepTime
    tokens: float

    @property
    def days(self) -> float:
        return self.time.days(self.tokens)


def _divisors(n: int) -> list[int]:
    return [k for k in range(1, n + 1) if n % k == 0]


def _with_tp(cfg: ExperimentConfig, tp: int, sp: bool) -> ExperimentConfig:
    """``cfg`` with only its TP size and sequence parallelism changed (for the family's layout rules)."""
    parallel = dataclasses.replace(cfg.parallel, tensor_model_parallel_size=tp, sequence_parallel=sp)
    return dataclasses.replace(cfg, parallel=parallel)


def candidate_layouts(cfg: ExperimentConfig, world_size: int, gpus_per_node: int = 8) -> list[Layout]:
    """Layouts megatron-core can run for ``cfg.model`` on ``world_size`` GPUs at ``cfg.train.global_batch_size``
    (the layout rules of parallel/layout.py and the model family's own; TP inside a node; SP where the family
    supports it; the recomputation kinds that change anything for the family)."""
    m, gbs = cfg.model, cfg.train.global_batch_size
    terms, family = terms_for(m), get_family(m.family)
    out = []
    for tp in (1, 2, 4, 8):
        if tp > gpus_per_node or world_size % tp or m.num_attention_heads % tp or m.kv_heads % tp:
            continue
        if m.ffn_size % tp:
            continue
        sp = tp > 1 and terms.supports_sequence_parallel
        if family.layout_problems(_with_tp(cfg, tp, sp), world_size):  # e.g. Mamba2's B/C groups per TP rank
            continue
        for pp in _divisors(m.num_layers):
            if pp > 32 or world_size % (tp * pp):
                continue
            dp = world_size // (tp * pp)
            for vpp in [None] + [v for v in (2, 3, 4, 6, 8) if pp > 1 and (m.num_layers // pp) % v == 0]:
                for mbs in (1, 2, 4, 8, 16):
                    if gbs % (mbs * dp):
                        continue
                    mb = gbs // (mbs * dp)
                    if vpp and mb % pp:
                        continue
                    for recompute in terms.recompute_kinds:
                        out.append(Layout(tp=tp, pp=pp, dp=dp, vpp=vpp, micro_batch_size=mbs, recompute=recompute,
                                          distributed_optimizer=True, sequence_parallel=sp))  # fmt: skip
    return out


def evaluate(cfg: ExperimentConfig, layout: Layout, cluster: Cluster, tokens: float, **time_kwargs) -> Plan:
    """Memory and time of one layout for ``cfg`` (bf16 on GPUs unless the config says fp16)."""
    precision = cfg.train.precision if cfg.train.precision != "fp32" else "bf16"
    kwargs = dict(global_batch_size=cfg.train.global_batch_size, precision=precision,
                  grad_reduce_dtype=cfg.parallel.grad_reduce_dtype)  # fmt: skip
    mem = estimate_memory(cfg.model, layout, capacity=cluster.gpu.hbm_bytes, **kwargs)
    time = estimate_step_time(cfg.model, layout, cluster, **kwargs, **time_kwargs)
    return Plan(layout, mem, time, tokens)


def search(cfg: ExperimentConfig, cluster: Cluster, tokens: float | None = None, **time_kwargs) -> list[Plan]:
    """Every candidate layout on ``cluster``, fitting ones first ranked by predicted time, then the rest."""
    tokens = tokens or cfg.train.train_iters * cfg.train.global_batch_size * cfg.model.seq_length
    plans = [evaluate(cfg, lay, cluster, tokens, **time_kwargs) for lay in
             candidate_layouts(cfg, cluster.world_size, cluster.gpus_per_node)]  # fmt: skip
    return sorted(plans, key=lambda p: (not p.memory.fits, round(p.time.step_s, 6), p.memory.total))


def format_table(plans: list[Plan], limit: int = 10) -> str:
    """The best ``limit`` plans as a text table (memory in GiB per GPU, times in seconds per step)."""
    head = (
        f"{'#':>2} {'layout':52s} {'wts':>5} {'grad':>5} {'opt':>5} {'act':>6} {'buf':>4} {'total':>6} | "
        f"{'comp':>6} {'tp':>5} {'bubl':>5} {'p2p':>5} {'dp':>5} {'opt':>5} {'step s':>7} | "
        f"{'tok/s':>9} {'MFU':>5} {'days':>6}"
    )
    lines = [head, "-" * len(head)]
    for i, p in enumerate(plans[:limit], 1):
        mt, tt = p.memory.terms, p.time.terms
        g = lambda k: mt[k] / GiB  # noqa: E731
        fit = "" if p.memory.fits else " (does not fit)"
        lines.append(
            f"{i:>2} {p.layout.describe() + fit:52s} {g('weights'):5.1f} {g('gradients'):5.1f} {g('optimizer'):5.1f} "
            f"{g('activations'):6.1f} {g('buffers'):4.1f} {p.memory.total / GiB:6.1f} | "
            f"{tt['compute']:6.2f} {tt['tp_comm']:5.2f} {tt['bubble']:5.2f} {tt['pp_p2p']:5.2f} "
            f"{tt['dp_comm']:5.2f} {tt['optimizer']:5.2f} {p.time.step_s:7.2f} | "
            f"{p.time.tokens_per_s:9.0f} {100 * p.time.mfu:4.1f}% {p.days:6.2f}"
        )
    return "\n".join(lines)
