"""Our own checkpoints of every model family load through the restricted unpicklers (checkpoint/safe_load.py).

The GPT-2 family's pretraining, distributed-optimizer and fine-tune-with-head checkpoints are covered by
test_checkpoint_safety.py and test_resume.py; here the LLaMA and Mamba2 tiny presets each save one step and
resume from it (model, optimizer, scheduler, RNG states, common state), in one process, and the restricted
readers are shown to have read the ``.metadata`` and the non-tensor items.
"""

from __future__ import annotations

import json
from pathlib import Path

from launch import run_tool


def test_llama_and_mamba2_checkpoints_resume_through_the_restricted_unpicklers(tmp_path):
    out = tmp_path / "counts.json"
    presets = ["tiny-llama", "tiny-mamba"]
    run_tool(Path(__file__).with_name("safe_load_worker.py"), 1, [str(out), str(tmp_path), *presets], tmp_path)
    counts = json.loads(out.read_text())
    for preset in presets:
        got = counts[preset]
        assert got["iterations"] == [2], (preset, got)  # resumed after step 1, trained step 2
        assert got["metadata"] >= 1 and got["objects"] >= 1, (preset, got)
