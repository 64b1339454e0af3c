#!/usr/bin/env python
"""Claim 1 (BioMedLM paper, arXiv 2403.18421, section 2): a BPE tokenizer trained on PubMed cuts biomedical text
into fewer tokens than a same-size tokenizer trained on general text, and splits biomedical terms less.

    python examples/reproduce/domain_tokenizer.py            # full run (26 min measured on a loaded 2-core machine)
    python examples/reproduce/domain_tokenizer.py --smoke    # seconds; checks the pipeline only

From the shared raw text to the table, with the project's CLIs:
  1. split the shared PubMed abstracts 90/10 by a hash of the PMID (held-out: never trained on), and take the
     same number of UTF-8 bytes of PubMed training text and of general text (C4 sample + WikiText-2 articles);
  2. tools/train_tokenizer.py: one byte-level BPE of the same vocabulary size on each;
  3. tools/tokenizer_report.py: tokens per held-out abstract, tokens per word, pieces per biomedical term;
  4. tools/preprocess_data.py + tools/pretrain.py: one tiny GPT (BioMedLM's family) per tokenizer, trained on
     the PubMed training split for the same number of tokens, same seed and schedule;
  5. tools/evaluate.py: bits per byte on the held-out abstracts (per UTF-8 byte, so the two tokenizers compare).
Writes examples/reproduce/results/domain_tokenizer.json.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    ROOT,
    Runner,
    base_parser,
    c4_documents,
    eval_report,
    hash_order,
    machine,
    nbytes,
    pubmed_documents,
    split,
    table,
    take_bytes,
    wikitext_documents,
    write_jsonl,
    write_result,
)

CLAIM = "domain_tokenizer"

# Sizes. Everything here is our choice, scaled down from BioMedLM's (28,896-token BPE, 2.7B GPT, seq 1024) to
# what trains in minutes on 2 CPU cores; --smoke shrinks it further only to check that the pipeline runs.
FULL = dict(vocab_size=8192, layers=4, hidden=128, heads=4, seq=128, global_batch=16, iters=300, lr=3e-3,
            min_lr=3e-4, warmup=30, eval_docs=300)
SMOKE = dict(vocab_size=384, layers=1, hidden=32, heads=2, seq=32, global_batch=4, iters=3, lr=3e-3,
             min_lr=3e-4, warmup=1, eval_docs=4)


def main(argv=None) -> int:
    args = base_parser(__doc__).parse_args(argv)
    size = SMOKE if args.smoke else FULL
    work = Path(args.work_dir or ROOT / "runs" / "reproduce" / (CLAIM + ("-smoke" if args.smoke else "")))
    shutil.rmtree(work, ignore_errors=True)
    run = Runner(work, args.verbose, args.in_process)
    t0 = time.time()
    load_start = machine()["load_average"]

    # 1. data: deterministic split, equal-byte tokenizer training sets
    pubmed_train, pubmed_held = split(pubmed_documents())
    general_train = [t for d in (c4_documents(), wikitext_documents()) for t in split(d)[0]]
    if args.smoke:
        pubmed_train, pubmed_held, general_train = pubmed_train[:60], pubmed_held[:8], general_train[:20]
    # Order the PubMed training text by hash, not by source file, before cutting it to the general text's size.
    ordered = hash_order(pubmed_train)
    budget = min(nbytes(pubmed_train), nbytes(general_train))
    tok_text = {"pubmed": take_bytes(ordered, budget), "general": take_bytes(general_train, budget)}
    data = work / "data"
    held_file = write_jsonl(data / "pubmed_heldout.jsonl", pubmed_held)
    train_file = write_jsonl(data / "pubmed_train.jsonl", pubmed_train)

    # 2. tokenizers
    vocab = {}
    for name, texts in tok_text.items():
        src = write_jsonl(data / f"tokenizer_{name}.jsonl", texts)
        out = run.tool("train_tokenizer.py", "--input", src, "--json-keys", "text", "--vocab-size",
                       size["vocab_size"], "--min-frequency", 2, "--output-dir", work / f"tokenizer_{name}")
        vocab[name] = int(out.split("trained ")[1].split("-token")[0])

    # 3. fragmentation report
    report_json = work / "tokenizer_report.json"
    report_text = run.tool("tokenizer_report.py", "--tokenizers", work / "tokenizer_pubmed", work / "tokenizer_general",
                           "--input", held_file, "--json-keys", "text", "--max-documents", len(pubmed_held),
                           "--json-output", report_json)
    report = {r["name"].removeprefix("tokenizer_"): r for r in json.loads(report_json.read_text())}

    # 4. one tiny GPT per tokenizer, same tokens, same seed
    tokens_trained = size["iters"] * size["global_batch"] * size["seq"]
    bpb, ppl = {}, {}
    for name in ("pubmed", "general"):
        tok = work / f"tokenizer_{name}"
        run.tool("preprocess_data.py", "--input", train_file, "--json-keys", "text", "--tokenizer", tok,
                 "--output-prefix", data / f"pubmed_{name}", "--workers", 1, "--append-eod", "--no-progress")
        ckpt = work / f"gpt_{name}"
        run.tool("pretrain.py", "--preset", "tiny-biomedlm",
                 "--set", f"model.num_layers={size['layers']}", "--set", f"model.hidden_size={size['hidden']}",
                 "--set", f"model.num_attention_heads={size['heads']}", "--set", f"model.seq_length={size['seq']}",
                 "--set", f"model.vocab_size={vocab[name]}",
                 "--set", f"train.train_iters={size['iters']}",
                 "--set", f"train.global_batch_size={size['global_batch']}",
                 "--set", f"train.micro_batch_size={min(4, size['global_batch'])}", "--set", f"train.seed={args.seed}",
                 "--set", "train.eval_iters=0",
                 # BioMedLM's schedule shape (paper Table 1: cosine with linear warmup), scaled down
                 "--set", f"optimizer.lr={size['lr']}", "--set", f"optimizer.min_lr={size['min_lr']}",
                 "--set", f"optimizer.lr_warmup_iters={size['warmup']}", "--set", "optimizer.lr_decay_style=cosine",
                 "--set", f"data.blend={data / f'pubmed_{name}_text_document'}", "--set", f"data.tokenizer={tok}",
                 "--set", "data.split=100,0,0", "--set", f"data.cache_dir={work / 'index-cache'}",
                 "--set", f"checkpoint.save={ckpt}", "--set", f"logging.log_interval={max(1, size['iters'] // 6)}",
                 label=f"pretrain-{name}")
        out = work / f"eval_{name}.json"
        run.tool("evaluate.py", "--load", ckpt, "--corpus", f"pubmed_heldout={held_file}",
                 "--limit", size["eval_docs"], "--no-progress", "--output", out, label=f"evaluate-{name}")
        r = eval_report(out)
        bpb[name] = r[("pubmed_heldout", "bits_per_byte")]
        ppl[name] = r[("pubmed_heldout", "perplexity")]

    # 5. the table
    def stat(name, key):
        return report[name][key] if key in report[name] else report[name]["stats"][key]

    def pieces(name):
        terms = report[name]["term_pieces"]
        return sum(len(p) for p in terms.values()) / len(terms)

    rows = [
        ["vocabulary size", vocab["pubmed"], vocab["general"]],
        ["tokenizer training text (bytes)", nbytes(tok_text["pubmed"]), nbytes(tok_text["general"])],
        ["tokens per held-out abstract", stat("pubmed", "tokens_per_document"), stat("general", "tokens_per_document")],
        ["tokens per word", stat("pubmed", "tokens_per_word"), stat("general", "tokens_per_word")],
        [f"pieces per biomedical term ({len(report['pubmed']['term_pieces'])} terms)", pieces("pubmed"),
         pieces("general")],
        [f"tiny GPT bits per byte, held-out PubMed ({tokens_trained:,} training tokens)", bpb["pubmed"],
         bpb["general"]],
        ["tiny GPT perplexity per token (not comparable across tokenizers)", ppl["pubmed"], ppl["general"]],
    ]
    wall = time.time() - t0
    held_docs = min(size["eval_docs"], len(pubmed_held))
    shown = {
        "fewer tokens per abstract": rows[2][1] < rows[2][2],
        "fewer pieces per term": rows[4][1] < rows[4][2],
        "lower bits per byte": bpb["pubmed"] < bpb["general"],
    }
    print(f"\nClaim 1 (BioMedLM section 2): domain BPE vs general BPE, held-out PubMed "
          f"({len(pubmed_held)} abstracts; bits per byte on the first {held_docs})\n")
    print(table(["measure", "PubMed BPE", "general BPE (C4 + WikiText-2)"], rows))
    print("\n" + report_text.split("\n\n", 1)[-1].strip())
    print("\nshown at this size: " + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in shown.items()))
    if not args.smoke:
        print("not shown at this size: the effect on a 2.7B model's downstream accuracy (BioMedLM section 2 argues it "
              "from fragmentation; only a tiny GPT's bits per byte is measured here).")
    print(f"wall time {wall:.0f}s, seed {args.seed}")
    result = {
        "claim": "domain tokenizer (BioMedLM arXiv 2403.18421 section 2)", "smoke": args.smoke,
        "sizes": size, "seed": args.seed, "tokens_trained_per_model": tokens_trained,
        "heldout": {"pubmed_abstracts": len(pubmed_held), "bits_per_byte_documents": held_docs,
                    "split": "sha256(PMID or title) < 0.10 (examples/reproduce/common.py)"},
        "table": {r[0]: {"pubmed_bpe": r[1], "general_bpe": r[2]} for r in rows},
        "term_pieces": {n: report[n]["term_pieces"] for n in report},
        "shown": shown, "wall_time_s": round(wall, 1), "tool_seconds": run.seconds,
        "machine": {**machine(), "load_average_at_start": load_start},
    }
    print(f"result: {write_result(CLAIM, result, args.smoke, args.results_dir and Path(args.results_dir))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
