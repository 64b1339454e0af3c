"""Loading never runs code from a checkpoint, and a damaged checkpoint is refused (or fallen back from) by name.

A crafted ``.metadata`` and a crafted common state each pickle a call to ``os.mkdir`` (a visible side effect);
both are refused with the class and the file named, and the directory is never made. Real checkpoints of the
tiny preset (saved by tools/pretrain.py) are checked against their manifests after a byte is flipped, a shard
truncated or deleted, or the manifest removed.
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from launch import BASE, read_metrics, run_finetune, run_pretrain
from toydata import FT_BASE, task_args

from megatron_biomed.checkpoint import (
    CheckpointError,
    latest_iteration,
    load_checkpoint,
    manifest,
    verify_checkpoint,
)
from megatron_biomed.checkpoint.safe_load import UnsafeCheckpointError, restricted_loading


class _Evil:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _real_checkpoint(initial_weights: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "ck"
    shutil.copytree(initial_weights, dst)
    return dst / "iter_0000000"


def _rewrite_manifest(path: Path) -> None:
    """What an attacker would do: ship a manifest that matches the crafted files."""
    (path / manifest.MANIFEST).unlink(missing_ok=True)
    names = [p.name for p in path.iterdir() if p.is_file() and p.name != manifest.MANIFEST]
    manifest.write(path, manifest.describe(path, names))


# Saves a dist checkpoint whose common state holds what the argument's code builds (one gloo process).
_SAVE_COMMON = """
import os, sys, torch.distributed as dist
from megatron_biomed.parallel.env import find_free_port
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(find_free_port()))
dist.init_process_group("gloo", rank=0, world_size=1)
from megatron_biomed.parallel import cpu
cpu.apply_cpu_patches()
from megatron.core import dist_checkpointing
from pathlib import Path


class _Evil:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


if __name__ == "__main__":
    for path, expr in zip(sys.argv[1::2], sys.argv[2::2]):
        os.makedirs(path)
        dist_checkpointing.save(eval(expr), path)
"""


@pytest.fixture(scope="module")
def crafted(tmp_path_factory):
    """Two dist checkpoints saved by one process: one whose common state pickles os.mkdir (of a marker
    directory), one like those written before manifests existed (no checkpoint_format, no manifest)."""
    root = tmp_path_factory.mktemp("crafted")
    marker = root / "pwned"
    evil, old = root / "ck" / "iter_0000003", root / "old" / "iter_0000001"
    evil_expr = f"{{'train_state': _Evil(Path({str(marker)!r}))}}"
    old_expr = "{'train_state': {'iteration': 1}}"
    subprocess.run(
        [sys.executable, "-c", _SAVE_COMMON, str(evil), evil_expr, str(old), old_expr],
        check=True,
        capture_output=True,
        timeout=300,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    return {"evil": evil, "old": old, "marker": marker}


def test_crafted_metadata_is_refused_before_anything_runs(initial_weights, tmp_path):
    path = _real_checkpoint(initial_weights, tmp_path)
    marker = tmp_path / "pwned"
    (path / ".metadata").write_bytes(pickle.dumps(_Evil(marker)))
    _rewrite_manifest(path)
    with pytest.raises(UnsafeCheckpointError, match=r"\.metadata: refusing to load 'posix\.mkdir'"):
        load_checkpoint(path, [], weights_only=True)
    assert not marker.exists()
    # The same through the reader directly (evaluation, conversion, inference read metadata this way).
    from megatron.core import dist_checkpointing

    with restricted_loading(), pytest.raises(UnsafeCheckpointError, match="posix.mkdir"):
        dist_checkpointing.load_tensors_metadata(str(path))
    # Importing megatron_biomed.checkpoint restricted every DCP read of the process (conversion reads with
    # FileSystemReader).
    from torch.distributed.checkpoint import FileSystemReader

    with pytest.raises(UnsafeCheckpointError, match="posix.mkdir"):
        FileSystemReader(str(path)).read_metadata()
    assert not marker.exists()


def test_crafted_common_state_is_refused_before_anything_runs(crafted):
    path, marker = crafted["evil"], crafted["marker"]
    _rewrite_manifest(path)
    with pytest.raises(UnsafeCheckpointError, match=r"__0_0\.distcp \(item '.*common.*'\): refusing to load"):
        load_checkpoint(path, [], weights_only=True)
    assert not marker.exists()
    with pytest.raises(UnsafeCheckpointError):
        load_checkpoint(path.parent, [], iteration=3)
    assert not marker.exists()


def test_checkpoint_without_manifest_from_before_manifests_loads_unverified(crafted, caplog):
    path = crafted["old"]
    assert not (path / manifest.MANIFEST).exists()
    assert verify_checkpoint(path) is False
    assert "loading it unverified" in caplog.text


def test_our_checkpoint_verifies(initial_weights, tmp_path):
    path = _real_checkpoint(initial_weights, tmp_path)
    assert verify_checkpoint(path) is True
    names = set(manifest.read(path)["files"])
    assert {".metadata", "__0_0.distcp", "metadata.json", "run_config.yaml"} <= names


def test_flipped_byte_is_refused_by_name_unless_checksums_are_skipped(initial_weights, tmp_path):
    path = _real_checkpoint(initial_weights, tmp_path)
    shard = path / "__0_0.distcp"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"__0_0\.distcp: crc32|xxh64"):
        verify_checkpoint(path)
    assert verify_checkpoint(path, checksums=False) is True  # sizes only


def test_truncated_shard_is_refused_by_name(initial_weights, tmp_path):
    path = _real_checkpoint(initial_weights, tmp_path)
    shard = path / "__0_0.distcp"
    shard.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=r"__0_0\.distcp: \d+ bytes, the manifest says \d+ \(truncated"):
        verify_checkpoint(path, checksums=False)


def test_deleted_shard_is_refused_by_name(initial_weights, tmp_path):
    path = _real_checkpoint(initial_weights, tmp_path)
    (path / "__0_0.distcp").unlink()
    with pytest.raises(CheckpointError, match=r"__0_0\.distcp: listed in .*manifest\.json but missing"):
        load_checkpoint(path, [], weights_only=True)


def test_a_file_added_after_the_save_is_refused_by_name(initial_weights, tmp_path):
    """A legacy ``common.pt`` dropped into a checkpoint would be read by megatron-core in place of the common
    state the save wrote; the manifest does not list it, so the checkpoint is refused."""
    path = _real_checkpoint(initial_weights, tmp_path)
    (path / "common.pt").write_bytes(b"anything")
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(path / 'common.pt'))}: not listed in"):
        verify_checkpoint(path)


def test_missing_manifest_of_a_new_checkpoint_is_refused(initial_weights, tmp_path):
    path = _real_checkpoint(initial_weights, tmp_path)
    (path / manifest.MANIFEST).unlink()
    with pytest.raises(CheckpointError, match=r"manifest\.json is missing, but this checkpoint was saved with one"):
        verify_checkpoint(path)


def test_resume_falls_back_to_the_newest_checkpoint_that_verifies(tmp_path):
    ck = tmp_path / "ck"
    run_pretrain(1, BASE + ["train.train_iters=4", "checkpoint.save_interval=2", f"checkpoint.save={ck}"], tmp_path)
    assert latest_iteration(ck) == 4
    shard = ck / "iter_0000004" / "__0_0.distcp"
    data = bytearray(shard.read_bytes())
    data[100] ^= 0xFF
    shard.write_bytes(bytes(data))
    proc = run_pretrain(
        1,
        BASE
        + [
            "train.train_iters=5",
            f"checkpoint.load={ck}",
            f"logging.metrics_file={tmp_path / 'm.jsonl'}",
        ],
        tmp_path,
    )
    out = proc.stdout + proc.stderr
    assert "iter_0000004/__0_0.distcp" in out and "fails verification" in out
    assert "falling back to" in out and "iter_0000002" in out
    assert "at iteration 2 (consumed samples 16)" in out
    assert sorted(read_metrics(tmp_path / "m.jsonl")) == [3, 4, 5]


def test_fine_tune_checkpoint_with_a_head_verifies_and_loads(toy, tmp_path):
    """A multiple-choice fine-tune's checkpoint (body and head) is written with a manifest and initialises
    another fine-tune through the restricted loaders."""
    mc = tmp_path / "mc"
    run_finetune(1, task_args(toy, "mc") + ["--save", str(mc)], FT_BASE + ["train.train_iters=1"], tmp_path)
    path = mc / "iter_0000001"
    assert verify_checkpoint(path) is True
    args = task_args(toy, "mc")
    args[args.index("--init-from") + 1] = str(mc)
    proc = run_finetune(1, args + ["--init-with-head"], FT_BASE + ["train.train_iters=1"], tmp_path)
    assert f"initialised model weights from {mc} (init_with_head=True)" in proc.stdout + proc.stderr
