"""Plants in issue 19's corpus readers and Slurm preprocessing pipeline: versions ranked, patent families, the
de-identification placeholders, MinHash's keep-first rule, completion markers, merge order, the whitespace squash of
the fast XML reader, and the preemption marker the SLURM launchers requeue on."""

from __future__ import annotations

from plant import Plant

RECONCILE = "megatron_biomed/data/cleaning/reconcile.py"
CTGOV = "megatron_biomed/data/readers/ctgov.py"
USPTO = "megatron_biomed/data/readers/uspto.py"
NOTES = "megatron_biomed/data/readers/clinical_notes.py"
MINHASH = "megatron_biomed/data/cleaning/minhash.py"
TASK = "megatron_biomed/data/jobs/task.py"
TOKEN_STAGES = "megatron_biomed/data/jobs/token_stages.py"
XMLSTREAM = "megatron_biomed/data/readers/xmlstream.py"
PRETRAIN = "megatron_biomed/training/pretrain.py"

PLANTS = [
    Plant(
        "reconcile-rank-ignored",
        "copies of one key are decided by file order alone: a reader's rank (a last-update date) is ignored",
        [(RECONCILE, "rank = event[3] if len(event) > 3 else 0", "rank = 0")],
        ["tests/data/test_cleaning.py::test_ranked_copies_keep_the_highest_rank_whatever_the_file_order"],
    ),  # fmt: skip
    Plant(
        "ctgov-latest-version-not-ranked",
        "ClinicalTrials.gov studies carry no last-update rank, so an older version read later wins",
        [(CTGOV, "    record_rank=_record_rank,\n", "")],
        ["tests/data/test_readers_ctgov.py::test_versions_withdrawn_and_empty_through_the_tool",
         "tests/data/test_readers_ctgov.py::test_legacy_files_and_a_newer_v2_version"],
    ),  # fmt: skip
    Plant(
        "uspto-family-by-publication-number",
        "a patent's family key is its own publication number, so a grant and its application are both kept",
        [(USPTO, 'family_key=application_number or f"{country}{number}",', 'family_key=f"{country}{number}",')],
        ["tests/data/test_readers_uspto.py::test_family_dedup_grant_wins_end_to_end"],
    ),  # fmt: skip
    Plant(
        "deid-placeholder-greedy",
        "the [** ... **] pattern is greedy: two placeholders on one line become one token (text between them lost)",
        [(NOTES, r'PLACEHOLDER = re.compile(r"\[\*\*.*?\*\*\]|(?<!_)___(?!_)")',
          r'PLACEHOLDER = re.compile(r"\[\*\*.*\*\*\]|(?<!_)___(?!_)")')],
        ["tests/data/test_readers_clinical_notes.py::test_placeholders_become_one_token_and_are_counted"],
    ),  # fmt: skip
    Plant(
        "minhash-dropped-docs-mark-buckets",
        "a dropped document also marks its buckets, so a later document similar only to it is dropped "
        "(clusters, not the single-process keep-first rule)",
        [(MINHASH, """                dropped.append(doc)
                break
        else:
            for x in mine:
                has_kept[x] = 1""", """                dropped.append(doc)
                break
        for x in mine:
            has_kept[x] = 1""")],
        ["tests/data/test_minhash_stages.py"],
        fast=True,
    ),  # fmt: skip
    Plant(
        "pipeline-stage-starts-without-markers",
        "a task starts although tasks of the stage before it have no completion marker (failed or cancelled)",
        [(TASK, "    if not sp.ready:\n", "    if False:\n")],
        ["tests/data/jobs/test_pipeline_local.py::test_a_stage_never_starts_on_missing_markers_and_a_failed_task_leaves_none"],
    ),  # fmt: skip
    Plant(
        "pipeline-merge-out-of-order",
        "the merge stage takes the tokenize tasks' partial datasets last task first",
        [(TOKEN_STAGES, "    for p in prefixes:\n", "    for p in reversed(prefixes):\n")],
        ["tests/data/jobs/test_pipeline_local.py::test_byte_identical_to_single_process_tools_whatever_the_task_count"],
    ),  # fmt: skip
    Plant(
        "squash-only-ascii-space",
        "the fast whitespace squash splits on ASCII spaces only (newlines, tabs, no-break spaces kept)",
        [(XMLSTREAM, 'return " ".join(text.split()) if text else ""',
          'return " ".join(w for w in text.split(" ") if w) if text else ""')],
        ["tests/data/test_medline_reference.py"],
    ),  # fmt: skip
    Plant(
        "no-preemption-marker",
        "a run stopped by SIGUSR1 leaves no preempted.json, so the SLURM launcher neither requeues nor says to resume",
        [(PRETRAIN, 'if cfg.checkpoint.save and summary["iteration"] < cfg.train.train_iters:',
          'if False and summary["iteration"] < cfg.train.train_iters:')],
        ["tests/examples/test_launchers_slurm.py::test_biollm_pretrain_sft_dpo_preempted_requeue_and_resume"],
    ),  # fmt: skip
]
