"""Plants in the pretraining half and the layout: checkpoint save/load/safety, seeds, sequence parallelism,
the data pre-flight, the indexed writer.

Last full run: see the table in tests/mutations/README.md."""

from __future__ import annotations

from plant import Plant

PUBLISH = "megatron_biomed/checkpoint/publish.py"
LOAD = "megatron_biomed/checkpoint/load.py"
MANIFEST_PY = "megatron_biomed/checkpoint/manifest.py"
SAFETY = "tests/checkpoint/test_checkpoint_safety.py"
SAVE_CRASH = "tests/checkpoint/test_save_crash.py"
CPU = "megatron_biomed/parallel/cpu.py"
PREFLIGHT = "megatron_biomed/data/preflight.py"
PREFLIGHT_TEST = "tests/data/test_preflight.py"
WRITER = "megatron_biomed/data/indexed/writer.py"
SAFE_LOAD = "megatron_biomed/checkpoint/safe_load.py"

PLANTS = [
    Plant(
        "rng-restore-skipped",
        "resume does not restore the RNG states",
        [(LOAD, '    if "rng_state" in loaded:', "    if False:")],
        [SAVE_CRASH + "::test_kill_inside_a_real_save[before_shards]"],
    ),
    Plant(
        "save-in-place-tracker-first",
        "save_checkpoint writes straight into iter_* (no temporary directory) and the tracker before the shards",
        [
            (PUBLISH, 'tmp = final.with_name(final.name + ".tmp")', "tmp = final"),
            (
                PUBLISH,
                '    faults.kill_point("before_shards", state.iteration)\n    try:\n',
                "    if is_rank0():\n        write_tracker(root, state.iteration)\n"
                '    faults.kill_point("before_shards", state.iteration)\n    try:\n',
            ),
            (PUBLISH, "    if final.exists():\n        shutil.rmtree(final)\n", ""),
            (PUBLISH, "    os.replace(tmp, final)\n", ""),
        ],
        [SAVE_CRASH + "::test_kill_inside_a_real_save[before_shards]"],
    ),
    Plant(
        "manifest-not-checked",
        "load ignores the manifest's sizes and checksums",
        [
            (MANIFEST_PY, '        if size != entry["size"]:', "        if False:"),
            (MANIFEST_PY, "        if checksums:\n            got", "        if False:\n            got"),
        ],
        [
            SAFETY + "::test_flipped_byte_is_refused_by_name_unless_checksums_are_skipped",
            SAFETY + "::test_truncated_shard_is_refused_by_name",
        ],
    ),
    Plant(
        "unrestricted-unpickler",
        "the restricted unpickler admits every class",
        [
            (
                SAFE_LOAD,
                "        if (module, name) in self.allowed or _is_torch_dtype_or_layout(module, name):",
                "        if True:",
            )
        ],
        [SAFETY + "::test_crafted_metadata_is_refused_before_anything_runs"],
    ),
    Plant(
        "seed-tp-offset-ignored",
        "every tensor-parallel rank gets the same model-parallel RNG seed",
        [(CPU, "seed + 2718 + tp_rank)", "seed + 2718)")],
        ["tests/training/test_seed_values.py"],
    ),
    Plant(
        "seed-ignored",
        "the configured seed is not used for the default generator",
        [(CPU, "    torch.manual_seed(seed)\n    tp_rank", "    torch.manual_seed(1234)\n    tp_rank")],
        ["tests/training/test_seed_values.py"],
    ),
    Plant(
        "sp-norm-grad-not-reduced",
        "under sequence parallelism the norm weights' gradients are not all-reduced across TP",
        [
            (
                "megatron_biomed/kernels/modules.py",
                "            p.sequence_parallel = config.sequence_parallel",
                "            p.sequence_parallel = False",
            )
        ],
        ["tests/training/test_parallel_equivalence.py::test_layout_matches_single_process[tp2-sequence-parallel]"],
    ),
    Plant(
        "bin-length-unchecked",
        "a .bin of another length than its .idx says passes the data pre-flight",
        [(PREFLIGHT, "    if have != want:", "    if False:")],
        [PREFLIGHT_TEST + "::test_bin_shorter_or_longer_than_its_idx_is_refused"],
        fast=True,
    ),
    Plant(
        "idx-header-unchecked",
        "an .idx with a bad magic, version or dtype passes the data pre-flight",
        [
            (
                PREFLIGHT,
                "    except ValueError as e:\n        raise DataError",
                "    except ValueError as e:\n        return None\n        raise DataError",
            )
        ],  # fmt: skip
        [PREFLIGHT_TEST + "::test_idx_with_bad_magic_version_or_dtype_is_refused"],
    ),
    Plant(
        "vocab-unchecked",
        "token ids are not compared with the tokenizer's vocabulary",
        [(PREFLIGHT, "(lo < 0 or hi >= vocab_size)", "(lo < 0 or hi >= vocab_size + 1000)")],
        [PREFLIGHT_TEST + "::test_token_outside_the_vocabulary_is_refused_with_its_place"],
    ),
    Plant(
        "stale-cache-unchecked",
        "a prefix rebuilt after megatron-core's index cache was made from it passes",
        [
            (
                "megatron_biomed/data/index_cache.py",
                "    files = cached_index_files(root, prefix)\n    if not files:",
                "    files = cached_index_files(root, prefix)\n    if True:",
            )
        ],  # fmt: skip
        [PREFLIGHT_TEST + "::test_prefix_rebuilt_after_the_index_cache_is_refused"],
    ),
    Plant(
        "token-memo-never-invalidated",
        "the memoised token range is reused after the .bin was rewritten",
        [(PREFLIGHT, 'scanned = not (memo and memo.get("stat") == bin_stat)', "scanned = not memo")],
        [PREFLIGHT_TEST + "::test_rewritten_bin_is_scanned_again"],
    ),
    Plant(
        "pointer-blocks-restart-at-zero",
        "each 2^22-entry block of .idx pointers restarts at byte 0",
        [(WRITER, "    pointers[1:] += ptr\n", "")],
        ["tests/data/test_indexed_large.py"],
    ),
    Plant(
        "spill-drops-document-ends",
        "a mid-stream spill of the writer (2^20 buffered entries) loses the buffered document ends",
        [
            (
                WRITER,
                "        if self._buffered >= _SPILL:\n            self._spill()",
                "        if self._buffered >= _SPILL:\n            self._docs.clear()\n            self._spill()",
            )
        ],  # fmt: skip
        ["tests/data/test_indexed_large.py"],
    ),
    Plant(
        "metadata-class-missing",
        "the restricted unpickler lacks a class every checkpoint's .metadata holds",
        [(SAFE_LOAD, '        (_DCP_MD, "ChunkStorageMetadata"),\n', "")],
        ["tests/checkpoint/test_safe_load_families.py"],
    ),
    Plant(
        "restriction-not-installed",
        "DCP loads do not go through the restricted unpicklers",
        [
            (
                SAFE_LOAD,
                "            filesystem.FileSystemReader.read_metadata = _patched_read_metadata\n"
                "            default_planner.DefaultLoadPlanner.load_bytes = _patched_load_bytes\n",
                "",
            )
        ],  # fmt: skip
        ["tests/checkpoint/test_safe_load_families.py"],
    ),
]
