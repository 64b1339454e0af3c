"""What makes a checkpoint directory count as complete, and what a crash mid-save leaves behind."""

from __future__ import annotations

import pytest

from megatron_biomed.checkpoint import (
    TRACKER,
    CheckpointError,
    is_complete,
    iteration_dir,
    latest_iteration,
)


def _complete(root, iteration):
    d = iteration_dir(root, iteration)
    d.mkdir(parents=True)
    (d / "__0_0.distcp").write_bytes(b"x")
    (d / "metadata.json").write_text("{}")
    return d


def test_no_tracker_means_no_checkpoint(tmp_path):
    assert latest_iteration(tmp_path) is None


def test_crash_mid_save_leaves_only_a_tmp_directory(tmp_path):
    _complete(tmp_path, 10)
    (tmp_path / TRACKER).write_text("10\n")
    # A save of iteration 20 died after writing shards but before metadata.json and the rename.
    partial = tmp_path / "iter_0000020.tmp"
    partial.mkdir()
    (partial / "__0_0.distcp").write_bytes(b"x")
    assert not is_complete(partial)
    assert latest_iteration(tmp_path) == 10


def test_directory_without_metadata_is_incomplete(tmp_path):
    d = iteration_dir(tmp_path, 5)
    d.mkdir()
    (d / "__0_0.distcp").write_bytes(b"x")
    assert not is_complete(d)
    (d / "metadata.json").write_text("{}")
    assert is_complete(d)


def test_tracker_naming_an_incomplete_checkpoint_is_an_error(tmp_path):
    d = iteration_dir(tmp_path, 30)
    d.mkdir()
    (tmp_path / TRACKER).write_text("30\n")
    with pytest.raises(CheckpointError, match="iter_0000030 is not a complete checkpoint"):
        latest_iteration(tmp_path)


def test_garbled_tracker_is_named(tmp_path):
    (tmp_path / TRACKER).write_text("ten\n")
    with pytest.raises(CheckpointError, match=f"{TRACKER}: expected an iteration number, found 'ten'"):
        latest_iteration(tmp_path)
