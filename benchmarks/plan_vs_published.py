"""The planner's predictions against published training runs (baseline: the published figure of each run).

Megatron-LM's weak-scaling MFU on H100, LLaMA-2's GPU hours on A100-80GB, BioMedLM's days on 128 A100-40GB;
which points fitted the efficiency parameters and which only check them is in the "role" column
(megatron_biomed/planning/calibration.py states the assumptions). Then the best layouts of the two recipes.

    python benchmarks/plan_vs_published.py [--refit]
"""

from __future__ import annotations

import argparse

from megatron_biomed.config import get_preset
from megatron_biomed.planning import Cluster, calibration, format_table, get_gpu, search


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--refit", action="store_true", help="fit the efficiency parameters again first")
    args = ap.parse_args()
    eff = w0 = None
    if args.refit:
        eff, w0 = calibration.fit_efficiency()
        print(f"fitted: efficiency {eff}, width_half {w0}")
    print(calibration.format_report(calibration.report(eff, w0)))
    for preset, gpu, nodes in (("biomedlm-2.7b", "A100-40GB", 16), ("biollm-70b", "H100-80GB", 32)):
        cfg = get_preset(preset)
        print(f"\n{preset} on {nodes * 8} x {gpu}")
        print(format_table([p for p in search(cfg, Cluster(get_gpu(gpu), nodes)) if p.memory.fits], 5))


if __name__ == "__main__":
    main()
