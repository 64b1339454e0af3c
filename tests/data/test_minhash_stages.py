"""MinHash dedup as stages (signatures per task, buckets per band group, keep-first clustering) drops
exactly the documents the single-process ``NearDuplicateIndex`` drops, and its files do not depend on
how the work was split."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from datasketch import MinHash, MinHashLSH

from megatron_biomed.data.cleaning import CleaningConfig, NearDuplicateIndex
from megatron_biomed.data.cleaning.minhash import (
    MinHashParams,
    band_groups,
    find_duplicates,
    keep_first_duplicates,
    read_duplicate_array,
    read_duplicates,
    read_signatures,
    shingles,
    signatures,
    write_buckets,
    write_signatures,
)

ROOT = Path(__file__).resolve().parents[2]
PUBMED = ROOT.parent / "shared" / "data" / "pubmed_abstracts" / "combined" / "pubmed_abstracts_shared.jsonl"


def sequential(texts: list[str], p: MinHashParams) -> list[int]:
    idx = NearDuplicateIndex(p.threshold, p.num_perm, p.shingle, p.seed)
    return [i for i, t in enumerate(texts) if idx.seen_before(t)]


def staged(texts: list[str], p: MinHashParams, tmp: Path, tasks: int, groups: int) -> tuple[list[int], dict]:
    """Run the stages; returns the dropped indices and the bytes of every bucket / duplicates file."""
    run = tmp / f"t{tasks}g{groups}"
    run.mkdir()
    sig_paths = []
    for t in range(tasks):  # round robin, files listed last first: bucket files must not care
        part = range(t, len(texts), tasks)
        sp = run / f"sig{t}.mhsig"
        assert write_signatures(((i, texts[i]) for i in part), sp, p) == len(part)
        sig_paths.insert(0, sp)
    write_signatures([], run / "empty.mhsig", p)  # a task whose slice held no documents
    sig_paths.append(run / "empty.mhsig")
    docs = np.concatenate([read_signatures(sp, p)[0] for sp in sig_paths])
    sigs = np.concatenate([read_signatures(sp, p)[1] for sp in sig_paths])
    assert np.array_equal(sigs[np.argsort(docs)], signatures(texts, p))  # a doc's signature: whichever task
    bkt_paths = []
    for g, bands in enumerate(band_groups(p.bands, groups)):
        bp = run / f"bkt{g}.mhbkt"
        write_buckets(sig_paths, bands, bp, p)
        bkt_paths.append(bp)
    n = find_duplicates(bkt_paths, run / "dups.mhdup")
    dups = read_duplicate_array(run / "dups.mhdup")
    assert len(dups) == n and read_duplicates(run / "dups.mhdup") == set(dups.tolist())
    assert not list(run.glob("*.tmp"))
    return dups.tolist(), {f.name: f.read_bytes() for f in [*bkt_paths, run / "dups.mhdup"]}


def edit(words: list[str], rng: random.Random, n: int, vocab: list[str]) -> list[str]:
    out = list(words)
    for _ in range(n):
        out[rng.randrange(len(out))] = rng.choice(vocab)
    return out


def planted_corpus(seed: int) -> list[str]:
    """Random docs with near copies (a few words edited), chains A~B~C with A, C dissimilar, exact
    copies, and a copy whose first copy was itself dropped; shuffled so copies come before and after."""
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(2000)]
    docs = [[rng.choice(vocab) for _ in range(rng.randint(20, 200))] for _ in range(60)]
    docs += [["tiny"], [], ["two", "words"]] * 2  # fewer words than a shingle; empty text
    for base in list(docs[:25]):
        docs.append(edit(base, rng, rng.randint(1, 3), vocab))
    for _ in range(8):  # chains: B shares 90% with A and with C, A and C share ~80% of words
        a = [rng.choice(vocab) for _ in range(150)]
        b = a[15:] + [rng.choice(vocab) for _ in range(15)]
        c = b[15:] + [rng.choice(vocab) for _ in range(15)]
        docs += [b, a, c] if rng.random() < 0.5 else [a, b, c]
    texts = [" ".join(d) for d in docs]
    rng.shuffle(texts)
    return texts


def test_signature_and_bands_are_datasketchs():
    p = MinHashParams()
    texts = ["", "one", "Fever, cough; and CHILLS were reported by 3 of 40 patients.", "a b c d e f g h i j"]
    sig = signatures(texts, p)
    for text, row in zip(texts, sig):
        m = MinHash(num_perm=p.num_perm, seed=p.seed)  # datasketch 2.0.0 default scheme: affine32
        m.update_batch([g.encode("utf-8") for g in shingles(text, p.shingle)])
        assert m.hashvalues.dtype == np.uint32 and np.array_equal(m.hashvalues, row)
    for threshold, num_perm in [(0.8, 128), (0.5, 64), (0.9, 256)]:
        lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        q = MinHashParams(threshold, num_perm)
        assert (q.bands, q.rows) == (lsh.b, lsh.r)
    assert MinHashParams.from_cleaning(CleaningConfig(near_dup_threshold=0.7, near_dup_shingle=3)) == MinHashParams(
        0.7, 128, 3, 1
    )


def test_keep_first_is_not_connected_components():
    # buckets {0, 1}, {1, 2}: 1 is dropped by 0, so 2 only meets a dropped doc and is kept;
    # bucket {1, 3, 4}: its first doc is dropped, 3 is kept there, so 4 (after 3) is dropped
    docs = np.array([0, 1, 1, 2, 1, 3, 4], dtype=np.int64)
    ids = np.array([0, 0, 1, 1, 2, 2, 2], dtype=np.int64)
    assert keep_first_duplicates(docs, ids, 3).tolist() == [1, 4]


@pytest.mark.parametrize("seed", [0, 1])
def test_stages_equal_sequential_index_and_bytes_do_not_depend_on_split(tmp_path, seed):
    texts = planted_corpus(seed)
    p = MinHashParams(threshold=0.7, num_perm=64, shingle=3)
    want = sequential(texts, p)
    assert 25 <= len(want) < len(texts) // 2  # the planted copies are found, distinct docs are not
    results = {(tasks, groups): staged(texts, p, tmp_path, tasks, groups) for tasks, groups in
               [(1, 1), (3, 1), (8, 1), (1, 4), (3, 4), (8, p.bands)]}
    for (tasks, groups), (got, files) in results.items():
        assert got == want, (tasks, groups)
        if groups in (1, 4):  # bucket and duplicates files: the same bytes whatever the number of tasks
            assert files == results[(1, groups)][1], (tasks, groups)
    dup_bytes = {files["dups.mhdup"] for _, files in results.values()}
    assert len(dup_bytes) == 1  # ... and whatever the band groups


def test_chain_keeps_the_third_doc(tmp_path):
    rng = random.Random(5)
    vocab = [f"w{i}" for i in range(5000)]
    a = [rng.choice(vocab) for _ in range(400)]
    b = a[20:] + [rng.choice(vocab) for _ in range(20)]  # A~B and B~C at ~0.9, A~C at ~0.8 or less
    c = b[60:] + [rng.choice(vocab) for _ in range(60)]
    texts = [" ".join(a), " ".join(b), " ".join(c), " ".join(edit(a, rng, 1, vocab))]
    p = MinHashParams()
    want = sequential(texts, p)
    assert want == [1, 3]  # C resembled only B, which was dropped: C is kept
    assert staged(texts, p, tmp_path, 3, 2)[0] == want


def test_bucket_whose_first_doc_was_dropped(tmp_path):
    # found by search over tiny word sets (1-word shingles, 5 bands of 3): doc 1 is a near copy of doc 0;
    # doc 2 meets only doc 1 (dropped), so it is kept; doc 3 shares a bucket whose first doc is 1 (dropped)
    # but which also holds doc 2 (kept), so doc 3 must go: comparing with a bucket's first doc only keeps it
    texts = ["w2 w4", "w0 w4 w1 w2", "w1 w0", "w1 w3 w4 w0"]
    p = MinHashParams(threshold=0.5, num_perm=16, shingle=1)
    assert sequential(texts, p) == [1, 3]
    assert staged(texts, p, tmp_path, 2, 2)[0] == [1, 3]


def test_bad_inputs_are_named(tmp_path):
    p = MinHashParams()
    write_signatures([(0, "a b c"), (1, "d e f")], tmp_path / "a.mhsig", p)
    write_signatures([(1, "d e f")], tmp_path / "b.mhsig", p)
    with pytest.raises(ValueError, match="document index 1"):
        write_buckets([tmp_path / "a.mhsig", tmp_path / "b.mhsig"], [0], tmp_path / "x.mhbkt", p)
    with pytest.raises(ValueError, match="seed=2"):
        write_buckets([tmp_path / "a.mhsig"], [0], tmp_path / "x.mhbkt", MinHashParams(seed=2))
    with pytest.raises(ValueError, match="bands must be"):
        write_buckets([tmp_path / "a.mhsig"], [p.bands], tmp_path / "x.mhbkt", p)
    write_buckets([tmp_path / "a.mhsig"], [0, 1], tmp_path / "g0.mhbkt", p)
    with pytest.raises(ValueError, match=r"band\(s\) \[2, 3"):
        find_duplicates([tmp_path / "g0.mhbkt"], tmp_path / "d.mhdup")
    with pytest.raises(ValueError, match="not a MinHash bucket file"):
        find_duplicates([tmp_path / "a.mhsig"], tmp_path / "d.mhdup")
    docs, sig = read_signatures(tmp_path / "a.mhsig", p)
    assert docs.tolist() == [0, 1] and sig.shape == (2, p.num_perm)

    def broken():
        yield 0, "a b c"
        raise OSError("input file vanished")

    with pytest.raises(OSError):
        write_signatures(broken(), tmp_path / "c.mhsig", p)
    assert not (tmp_path / "c.mhsig").exists() and not list(tmp_path.glob("*.tmp"))
    (tmp_path / "cut.mhsig").write_bytes((tmp_path / "a.mhsig").read_bytes()[:-4])
    with pytest.raises(ValueError, match="truncated"):
        read_signatures(tmp_path / "cut.mhsig")


def test_pubmed_abstracts_with_planted_near_copies(tmp_path):
    if not PUBMED.exists():
        pytest.skip(f"shared PubMed abstracts not staged at {PUBMED}")
    rng = random.Random(19)
    with open(PUBMED, encoding="utf-8") as f:
        lines = [json.loads(line) for _, line in zip(range(1000), f)]
    texts = [f"{d.get('title') or ''}\n{d.get('abstract') or ''}" for d in lines]
    for _ in range(100):  # a near copy (1-3 words changed) of an earlier or later abstract, anywhere
        words = texts[rng.randrange(len(texts))].split()
        for _ in range(rng.randint(1, 3)):
            words[rng.randrange(len(words))] = "edited"
        texts.insert(rng.randrange(len(texts) + 1), " ".join(words))
    p = MinHashParams()
    want = sequential(texts, p)
    assert len(want) >= 70  # short abstracts with 3 words changed fall below 0.8, as they should
    assert staged(texts, p, tmp_path, 3, 3)[0] == want
