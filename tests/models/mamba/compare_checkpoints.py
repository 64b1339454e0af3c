#!/usr/bin/env python
"""Worker for test_parallel.py: load dist checkpoints saved at any layout into one process (TP = PP = 1) and
write, per checkpoint, the largest difference of any parameter to the reference's, relative to that
parameter's largest magnitude.

    python compare_checkpoints.py --ref REF_CKPT --other NAME=CKPT [--other ...] --out diffs.json
"""

import argparse
import json
import sys

from megatron_biomed.inference.loading import load_model
from megatron_biomed.models.registry import build_model_chunks
from megatron_biomed.training.checkpointing import checkpoint_path, load_checkpoint


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--ref", required=True)
    p.add_argument("--other", action="append", default=[])
    p.add_argument("--out", required=True)
    a = p.parse_args()
    ref, cfg = load_model(a.ref)
    want = dict(ref.named_parameters())
    diffs = {}
    for spec in a.other:
        name, path = spec.split("=", 1)
        model = build_model_chunks(cfg)[0]
        load_checkpoint(checkpoint_path(path), [model], weights_only=True)
        diffs[name] = max(
            ((t - want[n]).abs().max() / want[n].abs().max().clamp_min(1e-12)).item()
            for n, t in model.named_parameters()
        )
    with open(a.out, "w") as f:
        json.dump(diffs, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
