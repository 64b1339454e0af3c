#!/usr/bin/env python
"""Mutation check: plant each known bug in a copy of the tree and show that the tests meant to catch it fail.

    .venv/bin/python tests/mutations/check.py            # every mutation
    .venv/bin/python tests/mutations/check.py rng-restore-skipped manifest-not-checked

Each mutation is a set of exact text replacements in a copy of the working tree (under a temporary
directory; the working tree itself is never touched) and the tests that must fail with it. The copy runs the
tests with ``PYTHONPATH`` pointing at itself, so the planted bug is what tools/pretrain.py imports too.
Prints one line per mutation: caught (the tests failed) or MISSED (they passed: the tests are too loose), and
exits non-zero when one is missed or a replacement no longer applies (the code moved: update the mutation).

Last run (2026-12-01, 2 loaded cores, ~5 min in all), every mutation caught:

* rng-restore-skipped: test_save_crash.py[before_shards] (dropout on, bit-exact resume): the losses differ.
* save-in-place-tracker-first: test_save_crash.py[before_shards] (a real save killed): the tracker names an
  incomplete checkpoint.
* manifest-not-checked: test_checkpoint_safety.py, flipped byte and truncated shard: not refused.
* unrestricted-unpickler: test_checkpoint_safety.py, crafted .metadata: the payload runs.
* seed-tp-offset-ignored: test_seed_values.py: the model-parallel tracker state differs.
* seed-ignored: test_seed_values.py: initial seed 1234, not 4321.
* sp-norm-grad-not-reduced: test_parallel_equivalence.py[tp2-sequence-parallel]: grad norm off by 4.1e-5
  relative at step 1 (allowed 1.5e-6).

Data and writer mutations (2026-12-02, each run alone on the same machine, all caught):

* bin-length-unchecked: test_preflight.py: the scan then reads past the end ("buffer is smaller").
* idx-header-unchecked, vocab-unchecked, token-memo-never-invalidated: test_preflight.py: no DataError.
* stale-cache-unchecked: test_preflight.py: the stale indices fail mid-read (a sample of 34 tokens, not 16).
* pointer-blocks-restart-at-zero: test_indexed_large.py: the .idx differs from megatron-core's (the older
  test_indexed_merge.py catches it too, through the pointers of a second shard).
* spill-drops-document-ends: test_indexed_large.py: the .idx is 520 bytes short. The older writer and merge
  tests, which never reach 2^20 entries, miss it.
* metadata-class-missing, restriction-not-installed: test_safe_load_families.py: tiny-llama's resume is
  refused, or reads nothing through the restricted unpicklers.

After the issue-16 layout and issue 17's three defects (2026-12-04; every plant's text still applies; these run
after the moves, all caught): rng-restore-skipped, save-in-place-tracker-first, manifest-not-checked,
unrestricted-unpickler, metadata-class-missing, restriction-not-installed, seed-tp-offset-ignored, seed-ignored,
sp-norm-grad-not-reduced, vocab-unchecked, stale-cache-unchecked, and the new ones:

* mamba-state-leaks-across-documents: test_mamba_sft.py: packed loss 122.41 (the state carried across examples)
  against 126.62 for each example alone.
* mamba-options-share-a-prompt: test_mamba_scoring.py: options scored after the others.
* hf-config-not-completed: test_hf_configs.py: a field config.json leaves out is missing (KeyError).
* config-imports-models: test_import_layers.py: the upward import is named.
* export-reads-the-first-layer-everywhere: test_hf_configs.py: HF -> ours -> HF changes gpt2's and llama's
  logits.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Mutation:
    name: str
    what: str
    edits: list[tuple[str, str, str]]  # (file, old text, new text): old must occur exactly once
    tests: list[str]


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
MAMBA_FAMILY = "megatron_biomed/models/mamba/family.py"

MUTATIONS = [
    Mutation(
        "rng-restore-skipped",
        "resume does not restore the RNG states",
        [(LOAD, '    if "rng_state" in loaded:', "    if False:")],
        [SAVE_CRASH + "::test_kill_inside_a_real_save[before_shards]"],
    ),
    Mutation(
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
    Mutation(
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
    Mutation(
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
    Mutation(
        "seed-tp-offset-ignored",
        "every tensor-parallel rank gets the same model-parallel RNG seed",
        [(CPU, "seed + 2718 + tp_rank)", "seed + 2718)")],
        ["tests/training/test_seed_values.py"],
    ),
    Mutation(
        "seed-ignored",
        "the configured seed is not used for the default generator",
        [(CPU, "    torch.manual_seed(seed)\n    tp_rank", "    torch.manual_seed(1234)\n    tp_rank")],
        ["tests/training/test_seed_values.py"],
    ),
    Mutation(
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
    Mutation(
        "bin-length-unchecked",
        "a .bin of another length than its .idx says passes the data pre-flight",
        [(PREFLIGHT, "    if have != want:", "    if False:")],
        [PREFLIGHT_TEST + "::test_bin_shorter_or_longer_than_its_idx_is_refused"],
    ),
    Mutation(
        "idx-header-unchecked",
        "an .idx with a bad magic, version or dtype passes the data pre-flight",
        [(PREFLIGHT, "    except ValueError as e:\n        raise DataError",
          "    except ValueError as e:\n        return None\n        raise DataError")],  # fmt: skip
        [PREFLIGHT_TEST + "::test_idx_with_bad_magic_version_or_dtype_is_refused"],
    ),
    Mutation(
        "vocab-unchecked",
        "token ids are not compared with the tokenizer's vocabulary",
        [(PREFLIGHT, "(lo < 0 or hi >= vocab_size)", "(lo < 0 or hi >= vocab_size + 1000)")],
        [PREFLIGHT_TEST + "::test_token_outside_the_vocabulary_is_refused_with_its_place"],
    ),
    Mutation(
        "stale-cache-unchecked",
        "a prefix rebuilt after megatron-core's index cache was made from it passes",
        [("megatron_biomed/data/index_cache.py", "    files = cached_index_files(root, prefix)\n    if not files:",
          "    files = cached_index_files(root, prefix)\n    if True:")],  # fmt: skip
        [PREFLIGHT_TEST + "::test_prefix_rebuilt_after_the_index_cache_is_refused"],
    ),
    Mutation(
        "token-memo-never-invalidated",
        "the memoised token range is reused after the .bin was rewritten",
        [(PREFLIGHT, 'scanned = not (memo and memo.get("stat") == bin_stat)', "scanned = not memo")],
        [PREFLIGHT_TEST + "::test_rewritten_bin_is_scanned_again"],
    ),
    Mutation(
        "pointer-blocks-restart-at-zero",
        "each 2^22-entry block of .idx pointers restarts at byte 0",
        [(WRITER, "    pointers[1:] += ptr\n", "")],
        ["tests/data/test_indexed_large.py"],
    ),
    Mutation(
        "spill-drops-document-ends",
        "a mid-stream spill of the writer (2^20 buffered entries) loses the buffered document ends",
        [(WRITER, "        if self._buffered >= _SPILL:\n            self._spill()",
          "        if self._buffered >= _SPILL:\n"
          "            self._docs.clear()\n            self._spill()")],  # fmt: skip
        ["tests/data/test_indexed_large.py"],
    ),
    Mutation(
        "metadata-class-missing",
        "the restricted unpickler lacks a class every checkpoint's .metadata holds",
        [(SAFE_LOAD, '        (_DCP_MD, "ChunkStorageMetadata"),\n', "")],
        ["tests/checkpoint/test_safe_load_families.py"],
    ),
    Mutation(
        "mamba-state-leaks-across-documents",
        "a Mamba2 model does not restart its conv and scan at packed documents (SFT packing leaks state)",
        [(MAMBA_FAMILY, "            reset_at_documents=not use_mamba_ssm,\n",
          "            reset_at_documents=False,\n")],  # fmt: skip
        ["tests/finetune/test_mamba_sft.py"],
    ),
    Mutation(
        "mamba-options-share-a-prompt",
        "evaluation packs a Mamba2 model's options behind one prompt (option k scored after the others)",
        [(MAMBA_FAMILY,
          "        return SegmentIsolation.NONE if mamba_ssm_available() else SegmentIsolation.STATE_RESET\n",
          "        return SegmentIsolation.ATTENTION_MASK\n")],  # fmt: skip
        ["tests/eval/test_mamba_scoring.py"],
    ),
    Mutation(
        "hf-config-not-completed",
        "config.json is not completed by transformers' config class (fields left out lose their defaults)",
        [("megatron_biomed/convert/registry.py", "        return config.to_dict()\n", "        return dict(hf)\n")],
        ["tests/convert/test_hf_configs.py"],
    ),
    Mutation(
        "export-reads-the-first-layer-everywhere",
        "the exporter reads every layer of a layer-stacked key at layer 0's offsets",
        [("megatron_biomed/convert/exporter.py",
          "            chunks[(sh.key, tuple(sh.global_offset))] = data.view(",
          "            chunks[(sh.key, (0,) * len(sh.global_offset))] = data.view(")],  # fmt: skip
        ["tests/convert/test_hf_configs.py"],
    ),
    Mutation(
        "config-imports-models",
        "the lowest layer imports a higher one (config -> models)",
        [("megatron_biomed/config/presets.py", "from megatron_biomed.config.experiment import",
          "from megatron_biomed.models import registry as _registry  # noqa: F401\n"
          "from megatron_biomed.config.experiment import")],  # fmt: skip
        ["tests/test_import_layers.py"],
    ),
    Mutation(
        "restriction-not-installed",
        "DCP loads do not go through the restricted unpicklers",
        [(SAFE_LOAD, "            filesystem.FileSystemReader.read_metadata = _patched_read_metadata\n"
          "            default_planner.DefaultLoadPlanner.load_bytes = _patched_load_bytes\n", "")],  # fmt: skip
        ["tests/checkpoint/test_safe_load_families.py"],
    ),
]


def _copy_tree(dst: Path) -> None:
    ignore = shutil.ignore_patterns(".venv", ".git", "__pycache__", ".pytest_cache", ".ruff_cache", "*.egg-info")
    for entry in ("megatron_biomed", "tests", "tools", "pytest.ini", "pyproject.toml", "ruff.toml"):
        src = ROOT / entry
        if src.is_dir():
            shutil.copytree(src, dst / entry, ignore=ignore)
        elif src.exists():
            shutil.copy2(src, dst / entry)


def run(mutation: Mutation) -> tuple[str, float]:
    with tempfile.TemporaryDirectory(prefix=f"mutation-{mutation.name}-") as tmp:
        work = Path(tmp)
        _copy_tree(work)
        for file, old, new in mutation.edits:
            path = work / file
            text = path.read_text()
            if text.count(old) != 1:
                return f"STALE ({file}: the text to replace occurs {text.count(old)} times)", 0.0
            path.write_text(text.replace(old, new))
        env = dict(os.environ, PYTHONPATH=str(work))
        start = time.time()
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *mutation.tests],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
        )
        took = time.time() - start
        if proc.returncode == 1:
            why = next((line[1:].strip() for line in proc.stdout.splitlines() if line.startswith("E ")), "")
            return f"caught   ({why[:150]})", took
        if proc.returncode == 0:
            return "MISSED", took
        return f"ERROR (pytest exit {proc.returncode}):\n{proc.stdout[-2000:]}", took


def main(argv: list[str]) -> int:
    chosen = [m for m in MUTATIONS if not argv or m.name in argv]
    unknown = set(argv) - {m.name for m in MUTATIONS}
    if unknown:
        print(f"unknown mutation(s) {sorted(unknown)}; known: {[m.name for m in MUTATIONS]}")
        return 2
    bad = 0
    for m in chosen:
        result, took = run(m)
        bad += not result.startswith("caught")
        print(f"{m.name:28s} {took:5.0f}s  {m.what}\n    {result}", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
