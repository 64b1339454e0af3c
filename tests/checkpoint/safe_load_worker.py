"""Save and resume tiny checkpoints of the given presets in this one process, counting what the restricted
unpicklers of checkpoint/safe_load.py read; writes {preset: {"metadata": n, "objects": n, "iterations": [...]}}.

Run by tests/checkpoint/test_safe_load_families.py: ``safe_load_worker.py OUT.json WORKDIR PRESET...``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from megatron_biomed.checkpoint import safe_load
from megatron_biomed.parallel.env import find_free_port
from megatron_biomed.training import pretrain

COUNTS = {"metadata": 0, "objects": 0}


class _CountingUnpickler(safe_load.RestrictedUnpickler):
    def load(self):
        COUNTS["metadata"] += 1
        return super().load()


def _counting_object_loader(real):
    def load(value, source):
        COUNTS["objects"] += 1
        return real(value, source)

    return load


def _launch(preset: str, sets: list[str]) -> None:
    os.environ["MASTER_PORT"] = str(find_free_port())
    argv = ["--preset", preset]
    for s in sets:
        argv += ["--set", s]
    rc = pretrain.main(argv)
    if rc != 0:
        raise SystemExit(f"{preset}: tools/pretrain.py {' '.join(argv)} exited {rc}")


def main() -> None:
    out, work, presets = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    safe_load.RestrictedUnpickler = _CountingUnpickler  # what the patched DCP reader looks up at each load
    safe_load.load_object_bytes = _counting_object_loader(safe_load.load_object_bytes)
    base = ["data.mock=true", "train.global_batch_size=2", "train.micro_batch_size=2", "train.eval_iters=0",
            "train.precision=fp32", "optimizer.lr_warmup_iters=0"]  # fmt: skip
    result = {}
    for preset in presets:
        ck, metrics = work / preset / "ck", work / preset / "m.jsonl"
        _launch(preset, base + ["train.train_iters=1", f"checkpoint.save={ck}"])
        COUNTS.update(metadata=0, objects=0)
        # resume: model, optimizer, scheduler, RNG and common state, all read back through safe_load
        _launch(preset, base + ["train.train_iters=2", f"checkpoint.load={ck}", f"logging.metrics_file={metrics}"])
        its = [json.loads(line)["iteration"] for line in metrics.read_text().splitlines()]
        result[preset] = dict(COUNTS, iterations=its)
    out.write_text(json.dumps(result))


if __name__ == "__main__":  # dist_checkpointing starts spawn-mode helpers: the guard is required
    main()
