"""tools/plan.py: the best layouts of a preset or config on a cluster, or the check of the configured one."""

from __future__ import annotations

import argparse
import sys

from megatron_biomed.config.experiment import ConfigError
from megatron_biomed.config.loading import load_config
from megatron_biomed.planning.hardware import GPUS, Cluster, GiB, get_gpu
from megatron_biomed.planning.layouts import layout_from_config
from megatron_biomed.planning.search import evaluate, format_table, search
from megatron_biomed.planning.terms import UnsupportedModel, check_supported


def build_arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Plan a pretraining run: memory per GPU, step time, days, best layout.")
    p.add_argument("--preset", help="named preset, e.g. biomedlm-2.7b, biollm-70b")
    p.add_argument("--config", help="YAML file of overrides (may name its own 'preset:')")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override one field, as for tools/pretrain.py (repeatable)")  # fmt: skip
    p.add_argument("--gpu", required=True, choices=sorted(GPUS), help="GPU type")
    p.add_argument("--nodes", type=int, required=True, help="number of nodes")
    p.add_argument("--gpus-per-node", type=int, default=8)
    p.add_argument("--intra-node-gbps", type=float, default=None,
                   help="GB/s per GPU inside a node, one direction (default: the GPU's NVLink)")  # fmt: skip
    p.add_argument("--inter-node-gbps", type=float, default=None,
                   help="GB/s per GPU between nodes (default 25 on A100, 50 on H100/H200)")  # fmt: skip
    p.add_argument("--tokens", type=float, default=None,
                   help="target training tokens (default: train.train_iters x global batch x seq length)")  # fmt: skip
    p.add_argument("--top", type=int, default=10, help="rows of the table")
    p.add_argument("--check", action="store_true",
                   help="estimate only the layout the config asks for (parallel.*, train.*); no search")  # fmt: skip
    return p


def main(argv=None) -> int:
    args = build_arg_parser().parse_args(argv)
    try:
        cfg = load_config(args.preset, args.config, args.overrides)
        check_supported(cfg.model)
    except (ConfigError, UnsupportedModel) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    gbps = lambda v: v * 1e9 if v else None  # noqa: E731
    cluster = Cluster(get_gpu(args.gpu), args.nodes, args.gpus_per_node, gbps(args.intra_node_gbps),
                      gbps(args.inter_node_gbps))  # fmt: skip
    tokens = args.tokens or cfg.train.train_iters * cfg.train.global_batch_size * cfg.model.seq_length
    print(f"{cfg.name} on {cluster.world_size} x {args.gpu} ({args.nodes} nodes): {tokens / 1e9:.1f}B tokens, "
          f"global batch {cfg.train.global_batch_size} x {cfg.model.seq_length}")  # fmt: skip
    if args.check:
        plan = evaluate(cfg, layout_from_config(cfg, cluster.world_size), cluster, tokens)
        print(format_table([plan], 1))
        if not plan.memory.fits:
            print(f"does not fit: {plan.memory.overflow()}")
            return 1
        return 0
    plans = search(cfg, cluster, tokens)
    fitting = [p for p in plans if p.memory.fits]
    if not fitting:
        best = min(plans, key=lambda p: p.memory.total)
        print(format_table([best], 1))
        print(f"no layout fits; the smallest: {best.memory.overflow()}")
        return 1
    print(format_table(fitting, args.top))
    best = fitting[0]
    print(f"\nchosen: {best.layout.describe()}: {best.memory.total / GiB:.1f} GiB per GPU, "
          f"{best.time.step_s:.2f} s/step, {best.time.tokens_per_s:,.0f} tokens/s, MFU {100 * best.time.mfu:.1f}%, "
          f"{best.days:.2f} days")  # fmt: skip
    flags = " ".join(f"--set {f}" for f in best.layout.set_flags())
    print(f"launch: torchrun --nnodes {args.nodes} --nproc-per-node {args.gpus_per_node} tools/pretrain.py "
          f"--preset {cfg.name} {flags}")  # fmt: skip
    return 0
