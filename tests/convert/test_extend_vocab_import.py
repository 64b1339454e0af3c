"""Vocabulary extension on import (BioLLM's +2,000 PubMed tokens, here +3): new rows are the mean of their
pieces, old rows and old-token logits unchanged, the extended tokenizer saved with the checkpoint."""

from __future__ import annotations

import torch
from hf_models import hf_logits, our_logits, tokens

WORDS = "hypercholesterolemia pneumonoultramicroscopic glomerulonephritis "


def test_import_with_extended_vocabulary(imported, tmp_path):
    from tokenizers import Tokenizer

    from megatron_biomed.convert.importer import import_hf
    from megatron_biomed.inference.loading import load_model
    from megatron_biomed.tokenizer import load_tokenizer
    from megatron_biomed.tokenizer.extend import ExtendVocabConfig, extend_tokenizer, mine_fragmented_words

    hf, hf_dir, _ = imported["llama"]  # untied: both the embedding and the output layer grow
    base = Tokenizer.from_file(str(hf_dir / "tokenizer.json"))
    words = mine_fragmented_words(base, [WORDS * 3], ExtendVocabConfig(top_n=3, min_count=1))
    assert len(words) == 3
    pieces = extend_tokenizer(hf_dir, words, tmp_path / "ext")
    import_hf(hf_dir, tmp_path / "ckpt", extend_vocab=tmp_path / "ext")
    model, cfg = load_model(tmp_path / "ckpt")
    vocab = cfg.model.vocab_size
    assert vocab == max(300, max(pieces) + 1)

    emb = model.embedding.word_embeddings.weight.detach()
    out = model.output_layer.weight.detach()
    hf_emb, hf_out = hf.get_input_embeddings().weight.detach(), hf.lm_head.weight.detach()
    for new_id, ids in pieces.items():
        assert torch.allclose(emb[new_id], hf_emb[ids].mean(0), atol=0, rtol=1e-6)
        assert torch.allclose(out[new_id], hf_out[ids].mean(0), atol=0, rtol=1e-6)
    old = [i for i in range(300) if i not in pieces]
    assert torch.equal(emb[old], hf_emb[old]) and torch.equal(out[old], hf_out[old])

    t = tokens()
    t = t.masked_fill(torch.isin(t, torch.tensor(list(pieces))), 5)  # old tokens only
    want, got = hf_logits(hf, t)[..., old], our_logits(model, t, vocab)[..., old]
    assert (want - got).abs().max().item() <= 1e-5 * want.abs().max().item()

    tok = load_tokenizer(cfg.data.tokenizer)  # the extended tokenizer went with the checkpoint
    assert len(tok.encode(" " + words[0].text.strip())) == 1
    assert (tmp_path / "ckpt" / "tokenizer" / "new_token_pieces.json").is_file()


def test_added_tokens_round_trip_through_import_and_export(imported, tmp_path):
    """BioMedLM's multiple-choice tokens added by the extension path: the checkpoint's tokenizer, the exported HF
    directory read by transformers and the authors' own tokenizer call (run_multiple_choice.py: the pair
    ``question + sep_token``, ``" " + option + sep_token``) give the same ids as our biomedlm-mc format; the
    exported embedding has a row per id, the new ones the mean of their pieces."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from megatron_biomed.convert.exporter import export_hf
    from megatron_biomed.convert.importer import import_hf
    from megatron_biomed.data.tasks import MultipleChoiceItem
    from megatron_biomed.finetune.encoding import TruncationCount, encode_parts, head_encoding
    from megatron_biomed.finetune.formats import BIOMEDLM_MC_TOKENS, input_format
    from megatron_biomed.tokenizer import load_tokenizer
    from megatron_biomed.tokenizer.extend import add_special_tokens

    hf, hf_dir, _ = imported["gpt2"]  # tied: the embedding is the output layer
    pieces = add_special_tokens(hf_dir, BIOMEDLM_MC_TOKENS, tmp_path / "ext")
    assert sorted(pieces) == [300, 301, 302]  # after the 300 base ids, in order
    import_hf(hf_dir, tmp_path / "ckpt", extend_vocab=tmp_path / "ext")
    export_hf(tmp_path / "ckpt", tmp_path / "out")
    ours = load_tokenizer(tmp_path / "ckpt" / "tokenizer")
    theirs = AutoTokenizer.from_pretrained(str(tmp_path / "out"))
    assert [theirs.convert_tokens_to_ids(t) for t in BIOMEDLM_MC_TOKENS] == [ours.token_to_id(t) for t in
                                                                             BIOMEDLM_MC_TOKENS] == [300, 301, 302]
    assert (theirs.pad_token, theirs.cls_token, theirs.sep_token) == BIOMEDLM_MC_TOKENS
    fmt = input_format("biomedlm-mc")
    item = MultipleChoiceItem(question="Patients with type 2 diabetes were given", options=("metformin.", "x"),
                              answer=0)  # fmt: skip
    enc = head_encoding(ours, fmt, "", 64, "right", ours.eod_id)
    got = encode_parts(ours, fmt.choices(item, "")[0], enc, TruncationCount())
    want = theirs(item.question + theirs.sep_token, f" {item.options[0]}" + theirs.sep_token).input_ids
    assert got == want and got.count(302) == 2 and got[-1] == 302

    model = AutoModelForCausalLM.from_pretrained(str(tmp_path / "out"))
    emb, base = model.get_input_embeddings().weight.detach(), hf.get_input_embeddings().weight.detach()
    assert emb.shape[0] == len(theirs) == 303
    assert torch.equal(emb[:300], base)
    for new_id, ids in pieces.items():
        assert torch.allclose(emb[new_id], base[ids].mean(0), atol=0, rtol=1e-6)
