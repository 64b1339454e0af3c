"""tools/train_tokenizer.py and load_tokenizer: a standard HF directory that transformers loads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from megatron_biomed.data.indexed.sample_text import synthetic_abstracts
from megatron_biomed.tokenizer import (
    EOD_TOKEN,
    TokenizerTrainConfig,
    load_tokenizer,
    train_bpe_tokenizer,
)

ROOT = Path(__file__).resolve().parents[2]
PUBMED = ROOT.parent / "shared" / "data" / "pubmed_abstracts" / "combined" / "pubmed_abstracts_shared.jsonl"


def _write_jsonl(path: Path, texts: list[str], key: str = "text") -> Path:
    path.write_text("".join(json.dumps({key: t}) + "\n" for t in texts))
    return path


def test_cli_trains_hf_directory_that_transformers_loads(tmp_path):
    src = _write_jsonl(tmp_path / "a.jsonl", synthetic_abstracts(300, seed=1))
    _write_jsonl(tmp_path / "b.jsonl", synthetic_abstracts(300, seed=2))
    out = tmp_path / "tok"
    r = subprocess.run([sys.executable, "tools/train_tokenizer.py", "--input", str(src.parent),
                        "--json-keys", "text", "--vocab-size", "700", "--min-frequency", "2",
                        "--output-dir", str(out)], check=False, cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        assert (out / name).is_file(), name

    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(out))
    ours = load_tokenizer(out)
    assert ours.vocab_size == 700 == len(hf)
    assert hf.eos_token == EOD_TOKEN and hf.eos_token_id == ours.eod
    text = "Clonidine 5 mg/kg i.v. reduced blood pressure (Smith et al., 1999)."
    assert hf.encode(text, add_special_tokens=False) == ours.encode(text)
    assert ours.decode(ours.encode(text)) == text
    assert ours.encode(EOD_TOKEN) == [ours.eod]


def test_training_defaults_follow_biomedlm():
    cfg = TokenizerTrainConfig()
    assert (cfg.vocab_size, cfg.min_frequency, cfg.special_tokens) == (28896, 2, [EOD_TOKEN])
    with pytest.raises(ValueError, match="special_tokens"):
        TokenizerTrainConfig(special_tokens=["<pad>"])


def test_min_frequency_limits_vocabulary(tmp_path):
    texts = synthetic_abstracts(100, seed=3)
    small = train_bpe_tokenizer(texts, TokenizerTrainConfig(vocab_size=5000, min_frequency=50))
    big = train_bpe_tokenizer(texts, TokenizerTrainConfig(vocab_size=5000, min_frequency=1))
    assert small.vocab_size < big.vocab_size <= 5000


def test_cli_names_bad_line(tmp_path):
    src = tmp_path / "bad.jsonl"
    src.write_text('{"text": "fine"}\n{"text": oops}\n')
    r = subprocess.run([sys.executable, "tools/train_tokenizer.py", "--input", str(src),
                        "--vocab-size", "300", "--output-dir", str(tmp_path / "tok")],
                       check=False, cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 1
    assert f"{src}:2: invalid JSON" in r.stderr
    assert not (tmp_path / "tok" / "tokenizer.json").exists()


@pytest.mark.skipif(not PUBMED.is_file(), reason=f"shared PubMed abstracts not found at {PUBMED}")
def test_trained_on_pubmed_splits_domain_words_less_than_bytes(tmp_path):
    rows = [json.loads(line) for line in PUBMED.open()][:1500]
    texts = [(r["title"] or "") + " " + (r["abstract"] or "") for r in rows]
    tok = train_bpe_tokenizer(texts[:1200], TokenizerTrainConfig(vocab_size=3000))
    held_out = " ".join(texts[1200:])
    n_tokens = len(tok.encode(held_out))
    # a trained BPE compresses held-out abstracts well beyond one token per byte
    assert n_tokens < len(held_out.encode()) / 3
    assert tok.decode(tok.encode(held_out)) == held_out


def test_gpt2_style_vocab_and_merges_directory(tmp_path):
    from megatron_biomed.tokenizer.batch_encode import (
        gigatoken_available,
        make_batch_encoder,
    )

    full = train_bpe_tokenizer(synthetic_abstracts(200, seed=4), TokenizerTrainConfig(vocab_size=500),
                               tmp_path / "full")
    gpt2 = tmp_path / "gpt2"
    gpt2.mkdir()
    full.hf_tokenizer.model.save(str(gpt2))  # writes vocab.json + merges.txt only
    assert sorted(p.name for p in gpt2.iterdir()) == ["merges.txt", "vocab.json"]
    tok = load_tokenizer(gpt2)
    text = "Dexamethasone 4 mg b.i.d. vs. placebo <|endoftext|> in 120 patients."
    assert tok.encode(text) == full.encode(text) and tok.eod == full.eod
    for backend in ["hf"] + (["gigatoken"] if gigatoken_available() else []):
        ids, _ = make_batch_encoder(gpt2, backend).encode_batch([text])
        assert ids.tolist() == full.encode(text), backend
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        load_tokenizer(tmp_path)


def _train_tool():
    """tools/train_tokenizer.py as a module, run in this process (no interpreter start)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_tokenizer_tool", ROOT / "tools" / "train_tokenizer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_biomedlm_layout_eot_last_offsets_trimmed_and_transformers_agrees(tmp_path):
    """BioMedLM's published layout (stanford-crfm/BioMedLM tokenize/train_bpe.py @ 9e35fdd: trim_offsets=True;
    the published tokenizer: <|endoftext|> = 28895 of 28,896) from the tool's flags, at 400 tokens; the
    default layout keeps <|endoftext|> = 0 with untrimmed offsets."""
    from transformers import AutoTokenizer

    from megatron_biomed.tokenizer import biomedlm_tokenizer_config

    published = biomedlm_tokenizer_config()
    assert (published.vocab_size, published.min_frequency, published.special_tokens) == (28896, 2, [EOD_TOKEN])
    assert (published.special_tokens_position, published.trim_offsets) == ("last", True)

    src = _write_jsonl(tmp_path / "a.jsonl", synthetic_abstracts(100, seed=1))
    main = _train_tool().main
    common = ["--input", str(src), "--vocab-size", "400", "--min-frequency", "1"]
    assert main([*common, "--special-tokens-position", "last", "--trim-offsets", "--output-dir",
                 str(tmp_path / "last")]) == 0
    assert main([*common, "--output-dir", str(tmp_path / "first")]) == 0
    last, first = load_tokenizer(tmp_path / "last"), load_tokenizer(tmp_path / "first")
    assert (last.vocab_size, last.eod) == (400, 399) and (first.vocab_size, first.eod) == (400, 0)
    text = "Clonidine reduced the blood pressure of 12 patients."
    ids = last.encode(text)
    assert max(ids) < 399 and last.decode(ids) == text
    # Trimmed offsets leave the byte-level space marker out of a word's span; untrimmed ones keep it.
    for tok, trimmed in ((last, True), (first, False)):
        enc = tok.hf_tokenizer.encode(text, add_special_tokens=False)
        spans = [(t, text[a:b]) for t, (a, b) in zip(enc.tokens, enc.offsets) if t.startswith("Ġ") and len(t) > 1]
        assert spans and all(span == (t[1:] if trimmed else " " + t[1:]) for t, span in spans), spans

    hf = AutoTokenizer.from_pretrained(str(tmp_path / "last"))
    assert len(hf) == 400 and hf.eos_token == EOD_TOKEN and hf.eos_token_id == 399
    got = hf(text + EOD_TOKEN, add_special_tokens=False, return_offsets_mapping=True)
    enc = last.hf_tokenizer.encode(text + EOD_TOKEN, add_special_tokens=False)
    assert got["input_ids"] == enc.ids == [*ids, 399]
    assert [tuple(o) for o in got["offset_mapping"]] == enc.offsets
    with pytest.raises(ValueError, match="special_tokens_position"):
        TokenizerTrainConfig(special_tokens_position="middle")


def test_biomedlm_tokenizer_launcher_is_the_published_recipe():
    """examples/biomedlm/train_tokenizer.sh passes tools/train_tokenizer.py exactly biomedlm_tokenizer_config()."""
    import shlex
    from dataclasses import asdict

    from megatron_biomed.tokenizer import biomedlm_tokenizer_config

    r = subprocess.run(["bash", str(ROOT / "examples" / "biomedlm" / "train_tokenizer.sh")], check=False,
                       capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "DRY_RUN": "1", "INPUT": "in",
                                                            "OUTPUT_DIR": "out", "PYTHON": "py"})
    assert r.returncode == 0, r.stderr
    argv = shlex.split(r.stdout)
    assert argv[:2] == ["py", "tools/train_tokenizer.py"]
    args = _train_tool().parse_args(argv[2:])
    assert (args.input, args.output_dir) == (["in"], "out")
    cfg = TokenizerTrainConfig(vocab_size=args.vocab_size, min_frequency=args.min_frequency,
                               special_tokens_position=args.special_tokens_position, trim_offsets=args.trim_offsets)
    assert asdict(cfg) == asdict(biomedlm_tokenizer_config())
