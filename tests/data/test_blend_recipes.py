"""Named blends: resolution, and megatron-core sampling proportions / restart determinism through
the lead's build_gpt_datasets."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from megatron_biomed.data.blends import BLENDS, BlendError, get_blend, parse_blend_spec
from megatron_biomed.data.indexed import IndexedDatasetWriter

ROOT = Path(__file__).resolve().parents[2]
N_SAMPLES = 10_000
SEQ = 16


def test_biomamba_recipe_resolves_to_weighted_prefix_list():
    blend = parse_blend_spec("biomamba:wikipedia=/d/wiki, pubmed=/d/pm,c4=/d/c4")
    assert blend == [0.8, "/d/pm", 0.1, "/d/c4", 0.1, "/d/wiki"]
    assert sum(get_blend("biomamba").weights.values()) == pytest.approx(1.0)
    with pytest.raises(BlendError, match="missing: wikipedia"):
        parse_blend_spec("biomamba:pubmed=/d/pm,c4=/d/c4")
    with pytest.raises(BlendError, match="not part of this blend: pile"):
        BLENDS["pubmed"].resolve({"pubmed": "/x", "pile": "/y"})
    with pytest.raises(BlendError, match="unknown blend 'nope'"):
        get_blend("nope")
    with pytest.raises(BlendError, match="is not component=prefix"):
        parse_blend_spec("biomedlm:pubmed_abstracts")
    assert parse_blend_spec("biomedlm:pmc_fulltext=/p,pubmed_abstracts=/a") == [0.18, "/a", 0.82, "/p"]
    for recipe in BLENDS.values():
        assert sum(recipe.weights.values()) == pytest.approx(1.0)


def test_biollm_corpus_blend_covers_the_five_sources_as_the_launcher_does():
    """blends.py's two BioLLM recipes and examples/biollm/_pretrain.sh's BLEND=... give the same data.blend."""
    corpus = get_blend("biollm-70b-corpus")
    assert [c.name for c in corpus.components] == [
        "pubmed_abstracts", "pmc_fulltext", "clinical_trials", "patents", "clinical_notes"]
    w = corpus.weights
    assert w["pubmed_abstracts"] / w["pmc_fulltext"] == pytest.approx(0.3 / 0.7)  # the literature split kept
    for name in ("biollm-70b", "biollm-70b-corpus"):
        res = subprocess.run(["bash", "-c", 'source examples/biollm/_pretrain.sh && printf "%s" "${DATA_BLEND}"'],
                             cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
                             env={"PATH": os.environ["PATH"], "REPO_DIR": str(ROOT), "DATA_DIR": "/d", "BLEND": name})
        assert res.returncode == 0, res.stderr
        items = res.stdout.split()
        launcher = [float(x) if i % 2 == 0 else x for i, x in enumerate(items)]
        recipe = get_blend(name)
        expected = recipe.resolve({c.name: f"/d/{c.name}_text_document" for c in recipe.components})
        assert launcher[1::2] == expected[1::2] and launcher[::2] == pytest.approx(expected[::2]), name
    res = subprocess.run(["bash", "-c", "source examples/biollm/_pretrain.sh"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=False, env={"PATH": os.environ["PATH"], "REPO_DIR": str(ROOT),
                                                                  "BLEND": "nope"})  # fmt: skip
    assert res.returncode == 2 and "expected biollm-70b or biollm-70b-corpus" in res.stderr


def _corpus(prefix, base: int, n_docs: int, seed: int) -> str:
    """Documents whose token ids all lie in [base, base + 100): a sample shows its source."""
    rng = np.random.default_rng(seed)
    with IndexedDatasetWriter(str(prefix), np.uint16) as w:
        for _ in range(n_docs):
            w.add_document(rng.integers(base, base + 100, size=int(rng.integers(5, 60))).tolist() + [0])
    return str(prefix)


def _draw(blend, cache_dir, seed=1234):
    from megatron_biomed.data import gpt_dataset as gpt

    train, _, _ = gpt.build_gpt_datasets(blend, seq_length=SEQ, seed=seed, num_samples=(N_SAMPLES, 0, 0),
                                         tokens=gpt.TokenInfo(vocab_size=4000, eod=0), split="100,0,0",
                                         cache_dir=str(cache_dir))
    sources, tokens = [], []
    for i in range(N_SAMPLES):
        s = train[i]
        t = np.asarray(s["tokens"])
        t = t[t != 0]
        sources.append(int(t[0]) // 1000 - 1)  # which corpus the sample's tokens come from
        tokens.append(np.asarray(s["tokens"]))
    return np.array(sources), np.stack(tokens)


def test_biomamba_proportions_and_restart(tmp_path):
    prefixes = {"pubmed": _corpus(tmp_path / "pm", 1000, 400, 1),
                "c4": _corpus(tmp_path / "c4", 2000, 150, 2),
                "wikipedia": _corpus(tmp_path / "wiki", 3000, 90, 3)}
    recipe = get_blend("biomamba")
    blend = recipe.resolve(prefixes)
    sources, tokens = _draw(blend, tmp_path / "cache_a")
    for k, name in enumerate(prefixes):
        share = float(np.mean(sources == k))
        assert abs(share - recipe.weights[name]) < 0.01, (name, share)
    # restart: same seed, index cache rebuilt from scratch -> the same samples in the same order
    sources2, tokens2 = _draw(blend, tmp_path / "cache_b")
    assert np.array_equal(sources, sources2) and np.array_equal(tokens, tokens2)
    # a different seed reorders (so the equality above is not vacuous)
    _, tokens3 = _draw(blend, tmp_path / "cache_c", seed=99)
    assert not np.array_equal(tokens, tokens3)
