"""The job-array pipeline on the local executor: byte-identical to the single-process tools at 1, 3 and 8 tasks;
relaunch reruns only tasks without a valid marker; a stage never starts on an incomplete stage before it."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from pipeline_corpus import assert_identical, same_bytes

from megatron_biomed.data.indexed.format import read_index
from megatron_biomed.data.jobs import StageNotReady, plan, run_task, save_spec
from megatron_biomed.data.jobs.local import run_local
from megatron_biomed.data.jobs.markers import marker_path, read_marker
from megatron_biomed.data.jobs.token_stages import group_by_size, outputs
from megatron_biomed.data.readers import BadInputError


@pytest.mark.parametrize("tasks", [1, 3, 8])
def test_byte_identical_to_single_process_tools_whatever_the_task_count(corpus, tmp_path, tasks):
    ref = corpus.reference(near_dup=True)
    spec = corpus.spec(tmp_path / "w", tasks, near_dup=True)
    save_spec(spec)
    p = run_local(spec, log=lambda m: None)
    assert p.complete
    assert [sp.tasks for sp in p.stages if sp.name in ("convert", "tokenize")] == [tasks, tasks]
    assert_identical(tmp_path / "w" / "out_text_document", ref)
    # the cleaned JSONL too, shard for shard, and the same counts in the cleaning report
    shards = sorted(p.name for p in (ref / "jsonl").glob("*.jsonl"))
    assert shards == sorted(p.name for p in (tmp_path / "w" / "jsonl").glob("*.jsonl"))
    for name in shards:
        assert same_bytes(ref / "jsonl" / name, tmp_path / "w" / "jsonl" / name), name
    want = json.loads((ref / "jsonl" / "cleaning_report.json").read_text())
    got = json.loads((tmp_path / "w" / "cleaning_report.json").read_text())
    assert want["dropped"] == got["dropped"] and want["records_kept"] == got["records_kept"]
    assert {"near_duplicate", "duplicate_text", "superseded", "deleted"} <= set(got["dropped"])


def test_relaunch_reruns_only_unfinished_tasks_and_what_a_changed_input_touches(corpus, tmp_path):
    ref = corpus.reference(near_dup=False)
    inputs = tmp_path / "in"
    shutil.copytree(corpus.root / "in", inputs)
    spec = corpus.spec(tmp_path / "w", 3, near_dup=False)
    spec = type(spec)(**{**spec.__dict__, "inputs": tuple(str(inputs / os.path.basename(p)) for p in spec.inputs)})
    save_spec(spec)
    run_local(spec, log=lambda m: None)
    stamp = {(sp.name, k): read_marker(spec.work, sp.name, k)["seconds"] for sp in plan(spec).stages
             for k in range(sp.tasks)}
    # a task killed before its marker: only that task runs again, nothing downstream (its digest is unchanged)
    marker_path(spec.work, "convert", 1).unlink()
    assert [(sp.name, sp.pending) for sp in plan(spec).stages if sp.pending][0] == ("convert", [1])
    ran = []
    run_local(spec, log=ran.append)
    assert ran == ["convert: 1 of 3 task(s) to run"]
    assert_identical(spec.work / "out_text_document", ref)
    assert all(read_marker(spec.work, n, k)["seconds"] == s for (n, k), s in stamp.items() if (n, k) != ("convert", 1))
    # a changed input reruns its own convert task, and every later stage (the exact-dedup decision spans all files)
    last = spec.groups()[2][-1].input
    os.utime(last, ns=(os.stat(last).st_atime_ns, os.stat(last).st_mtime_ns + 10**9))
    p = plan(spec)
    assert p.get("convert").pending == [2] and not p.get("decide").ready


def test_a_stage_never_starts_on_missing_markers_and_a_failed_task_leaves_none(corpus, tmp_path):
    inputs = [str(p) for p in corpus.inputs]
    broken = tmp_path / "pubmed25n0009.xml"
    broken.write_text("<PubmedArticleSet><PubmedArticle>", encoding="utf-8")
    spec = corpus.spec(tmp_path / "w", 3, near_dup=False)
    spec = type(spec)(**{**spec.__dict__, "inputs": (*inputs, str(broken))})
    save_spec(spec)
    bad_task = next(k for k, g in enumerate(spec.groups()) if any(t.input == broken for t in g))
    with pytest.raises(BadInputError):
        run_local(spec, log=lambda m: None)
    assert read_marker(spec.work, "convert", bad_task) is None
    with pytest.raises(StageNotReady, match=rf"stage 'convert' task\(s\) {bad_task} have no valid completion marker"):
        run_task(spec.work, "decide", 0)
    assert not (spec.work / "out_text_document.bin").exists()


def test_merge_cuts_files_at_the_target_size_in_order(corpus, tmp_path):
    ref = corpus.reference(near_dup=False)
    spec = corpus.spec(tmp_path / "w", 3, near_dup=False, target_file_size=1)  # every partial its own file
    save_spec(spec)
    run_local(spec, log=lambda m: None)
    outs = outputs(spec)
    assert [o["prefix"] for o in outs] == [str(tmp_path / "w" / f"out_{i:05d}_text_document") for i in range(3)]
    joined = b"".join(open(o["prefix"] + ".bin", "rb").read() for o in outs)
    assert joined == (ref / "ref_text_document.bin").read_bytes()
    assert sum(o["documents"] for o in outs) == read_index(str(ref / "ref_text_document")).num_documents
    assert group_by_size([o["prefix"] for o in outs], 10**12) == [[o["prefix"] for o in outs]]
