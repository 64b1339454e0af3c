"""Every file of a checkpoint saved at 2 and at 4 ranks is verified: one flipped bit anywhere is refused by
the file's name.

The checkpoints are the session's resume-across-layouts run (tests/conftest.py: 4 ranks at TP2 x PP2, then 2
ranks at TP1 x PP2, each saving with the optimizer). The directory is listed here, not the manifest, so a file
the save starts writing is checked as soon as it exists; one the manifest leaves out fails the baseline (an
unlisted file is refused) or its flipped copy is loaded unnoticed. Each file gets a bit flipped at its first,
middle and last byte and at the first ASCII digit after the middle (in a text file a number that still parses:
a size or checksum in manifest.json, which must be blamed on manifest.json and not on the file it describes),
in turn, put back after each; ``verify_checkpoint`` (what every load calls before reading anything) must
name it.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from megatron_biomed.checkpoint import CheckpointError, manifest, verify_checkpoint

# What a save at TP x PP = 2 x 2 (4 ranks) and 1 x 2 (2 ranks) writes, besides the shards.
SHARED = [".metadata", "manifest.json", "metadata.json", "run_config.yaml"]


def _flip_each_byte_position(path: Path) -> list[str]:
    """Flip one bit at the first, middle and last byte and the first digit after the middle of each file of
    ``path`` in turn; return the files checked. Every flip must be refused by ``verify_checkpoint`` with the
    file's name at the head of the message."""
    files = sorted(p.name for p in path.iterdir())
    for name in files:
        target = path / name
        original = target.read_bytes()
        middle = len(original) // 2
        digit = next((i for i in range(middle, len(original)) if 0x30 <= original[i] <= 0x39), middle)
        for pos in sorted({0, middle, digit, len(original) - 1}):
            damaged = bytearray(original)
            damaged[pos] ^= 0x01
            target.write_bytes(bytes(damaged))
            try:
                with pytest.raises(CheckpointError) as refused:
                    verify_checkpoint(path)
            finally:
                target.write_bytes(original)
            message = str(refused.value)
            assert message.startswith(f"{target}: "), f"{name}, byte {pos} flipped: refused as {message!r}"
    assert verify_checkpoint(path) is True  # every file put back
    return files


@pytest.mark.parametrize("iteration,ranks", [(10, 4), (20, 2)], ids=["4-ranks", "2-ranks"])
def test_a_flipped_bit_in_any_file_is_refused_by_name(resumed_across_layouts, iteration, ranks, tmp_path):
    path = tmp_path / "ck"
    shutil.copytree(resumed_across_layouts["ck"] / f"iter_{iteration:07d}", path)
    assert verify_checkpoint(path) is True
    files = _flip_each_byte_position(path)
    shards = [n for n in files if n.endswith(".distcp")]
    # Every rank wrote shards, and the manifest lists each file of the directory but itself.
    assert sorted({re.match(r"__(\d+)_\d+\.distcp$", n).group(1) for n in shards}) == [str(r) for r in range(ranks)]
    assert sorted(set(files) - set(shards)) == SHARED
    assert sorted(manifest.read(path)["files"]) == sorted(n for n in files if n != manifest.MANIFEST)
