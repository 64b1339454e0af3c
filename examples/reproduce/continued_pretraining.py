#!/usr/bin/env python
"""Claim 2 (BioMamba): continued pretraining on the 80/10/10 PubMed / C4 / Wikipedia blend lowers PubMed
perplexity while general-text perplexity stays close to where it was; continuing on PubMed alone forgets more.

    python examples/reproduce/continued_pretraining.py           # full run (see README for measured wall times)
    python examples/reproduce/continued_pretraining.py --smoke   # seconds; checks the pipeline only

From the shared raw text to the table, with the project's CLIs, for a tiny Mamba2 (BioMamba's family) and a
tiny GPT:
  1. hold out 10% of each corpus by a hash of its key (PubMed PMID, C4 URL, WikiText-2 article title);
  2. tools/train_tokenizer.py: one byte-level BPE on the training parts of all three (BioMamba keeps the
     GPT-NeoX tokenizer of its base model; ours is trained here, since the base model is trained here too);
  3. tools/preprocess_data.py: one .bin/.idx per corpus;
  4. tools/pretrain.py: the "base" model, pretrained on general text only (C4 + WikiText-2);
  5. tools/pretrain.py --set checkpoint.init_from=base: continued (a) on the "biomamba" blend of
     megatron_biomed/data/blends.py (80/10/10) and (b) on PubMed alone, the same steps, the recipe's schedule
     shape (linear warmup, cosine decay);
  6. tools/evaluate.py: perplexity and bits per byte of base, (a) and (b) on each held-out corpus.
Writes examples/reproduce/results/continued_pretraining.json.
"""

from __future__ import annotations

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

from megatron_biomed.data.blends import get_blend  # noqa: E402

CLAIM = "continued_pretraining"

# "Stays within a stated band": general-text perplexity after continued pretraining at most this factor of the
# base model's (our choice, stated before the run).
BAND = 1.10

# Sizes, all our choice (scaled to minutes on 2 CPU cores). The continued run's schedule keeps the recipe's
# shape: linear warmup, then cosine decay to 0.1 x the peak LR (LeoYML/BioMamba ft_biomamba/config.py @ e61db22:
# CPTConfig warmup_ratio 0.10, min_lr_ratio 0.1), a peak well below the base run's. That repository's own CPT
# runner (ft_biomamba/run_cpt.py @ e61db22) holds the peak for a stable phase first (warmup-stable-decay,
# stable_ratio 0.65); the schedules on this branch have no stable phase, so the decay here is cosine over the
# whole run after warmup (~7%), as the issue describes the recipe.
FAMILIES = {
    "mamba2": ("tiny-mamba", ["model.num_attention_heads=16"]),  # SSM heads: expand 2 x hidden 128 / head dim 16
    "gpt": ("tiny-biomedlm", ["model.num_attention_heads=4"]),
}
FULL = dict(vocab_size=4096, layers=4, hidden=128, seq=128, global_batch=16, base_iters=240, base_lr=3e-3,
            base_min_lr=3e-4, base_warmup=24, cont_iters=120, cont_lr=1e-3, cont_min_lr=1e-4, cont_warmup=8,
            eval_docs={"pubmed": 100, "c4": 40, "wikipedia": 6})
SMOKE = dict(vocab_size=384, layers=1, hidden=32, seq=32, global_batch=4, base_iters=2, base_lr=3e-3,
             base_min_lr=3e-4, base_warmup=1, cont_iters=2, cont_lr=1e-3, cont_min_lr=1e-4, cont_warmup=1,
             eval_docs={"pubmed": 2, "c4": 2, "wikipedia": 1})


def main(argv=None) -> int:
    p = base_parser(__doc__)
    p.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    args = p.parse_args(argv)
    size = SMOKE if args.smoke else FULL
    work = Path(args.work_dir or ROOT / "runs" / "reproduce" / (CLAIM + ("-smoke" if args.smoke else "")))
    shutil.rmtree(work, ignore_errors=True)
    run = Runner(work, args.verbose, args.in_process)
    t0 = time.time()
    load_start = machine()["load_average"]

    # 1. data
    corpora = {"pubmed": split(pubmed_documents()), "c4": split(c4_documents()),
               "wikipedia": split(wikitext_documents())}
    if args.smoke:
        corpora = {k: (tr[:30], held[:2]) for k, (tr, held) in corpora.items()}
    data = work / "data"
    train_files = {k: write_jsonl(data / f"{k}_train.jsonl", tr) for k, (tr, _) in corpora.items()}
    # the scored part of each held-out set: its first documents (the held-out documents differ in length by corpus)
    held_files = {k: write_jsonl(data / f"{k}_heldout.jsonl", held[: size["eval_docs"][k]])
                  for k, (_, held) in corpora.items()}

    # 2. one tokenizer on the training text of all three (PubMed cut to the general text's size)
    general = [t for k in ("c4", "wikipedia") for t in corpora[k][0]]
    tok_text = take_bytes(hash_order(corpora["pubmed"][0]), nbytes(general)) + general
    tok = work / "tokenizer"
    out = run.tool("train_tokenizer.py", "--input", write_jsonl(data / "tokenizer_train.jsonl", tok_text),
                   "--vocab-size", size["vocab_size"], "--min-frequency", 2, "--output-dir", tok)
    vocab = int(out.split("trained ")[1].split("-token")[0])

    # 3. .bin/.idx per corpus
    prefix = {}
    for k, f in train_files.items():
        run.tool("preprocess_data.py", "--input", f, "--json-keys", "text", "--tokenizer", tok,
                 "--output-prefix", data / k, "--workers", 1, "--append-eod", "--no-progress")
        prefix[k] = str(data / f"{k}_text_document")
    blends = {
        "base": [0.5, prefix["c4"], 0.5, prefix["wikipedia"]],  # general text only (our choice: equal weights)
        "blend": get_blend("biomamba").resolve(prefix),  # 0.8 pubmed, 0.1 c4, 0.1 wikipedia
        "pubmed_only": [prefix["pubmed"]],
    }

    def train(family: str, stage: str, init_from: Path | None) -> Path:
        preset, extra = FAMILIES[family]
        s = "base" if stage == "base" else "cont"
        ckpt = work / f"{family}_{stage}"
        sets = [f"model.num_layers={size['layers']}", f"model.hidden_size={size['hidden']}",
                f"model.seq_length={size['seq']}", f"model.vocab_size={vocab}", *extra,
                f"train.train_iters={size[s + '_iters']}", f"train.global_batch_size={size['global_batch']}",
                f"train.micro_batch_size={min(4, size['global_batch'])}", f"train.seed={args.seed}",
                "train.eval_iters=0", f"optimizer.lr={size[s + '_lr']}", f"optimizer.min_lr={size[s + '_min_lr']}",
                f"optimizer.lr_warmup_iters={size[s + '_warmup']}", "optimizer.lr_decay_style=cosine",
                "data.blend=" + " ".join(map(str, blends[stage])), f"data.tokenizer={tok}", "data.split=100,0,0",
                f"data.cache_dir={work / 'index-cache'}", f"checkpoint.save={ckpt}",
                f"logging.log_interval={max(1, size[s + '_iters'] // 4)}"]
        if init_from:
            sets.append(f"checkpoint.init_from={init_from}")
        run.tool("pretrain.py", "--preset", preset, *[a for x in sets for a in ("--set", x)],
                 label=f"pretrain-{family}-{stage}")
        return ckpt

    def evaluate(family: str, stage: str, ckpt: Path) -> dict:
        out = work / f"eval_{family}_{stage}.json"
        corpus_args = [a for k, f in held_files.items() for a in ("--corpus", f"{k}={f}")]
        run.tool("evaluate.py", "--load", ckpt, *corpus_args, "--no-progress", "--output", out,
                 label=f"evaluate-{family}-{stage}")
        r = eval_report(out)
        return {k: {"perplexity": r[(k, "perplexity")], "bits_per_byte": r[(k, "bits_per_byte")]} for k in held_files}

    results: dict[str, dict] = {}
    for family in args.families:
        base = train(family, "base", None)
        results[family] = {"base": evaluate(family, "base", base)}
        for stage in ("blend", "pubmed_only"):
            results[family][stage] = evaluate(family, stage, train(family, stage, base))

    # table: perplexity per held-out corpus, and the ratio to the base model
    wall = time.time() - t0
    rows, verdict = [], {}
    for family, res in results.items():
        for stage, label in (("base", "general text only (base)"), ("blend", "+ 80/10/10 blend"),
                             ("pubmed_only", "+ PubMed only")):
            row = [f"{family}: {label}"]
            for k in ("pubmed", "c4", "wikipedia"):
                ppl = res[stage][k]["perplexity"]
                ratio = ppl / res["base"][k]["perplexity"]
                row.append(f"{ppl:9.2f}" + ("" if stage == "base" else f" (x{ratio:.3f})"))
            rows.append(row)
        b, bl, pm = res["base"], res["blend"], res["pubmed_only"]

        def ratio(stage, k):
            return res[stage][k]["perplexity"] / b[k]["perplexity"]

        verdict[family] = {
            "pubmed perplexity falls with the blend": bl["pubmed"]["perplexity"] < b["pubmed"]["perplexity"],
            f"c4 and wikipedia within x{BAND:.2f} of base with the blend":
                all(ratio("blend", k) <= BAND for k in ("c4", "wikipedia")),
            "pubmed-only forgets more (c4 and wikipedia perplexity above the blend's)":
                all(pm[k]["perplexity"] > bl[k]["perplexity"] for k in ("c4", "wikipedia")),
            "pubmed-only reaches lower pubmed perplexity than the blend":
                pm["pubmed"]["perplexity"] < bl["pubmed"]["perplexity"],
        }
    tokens = {s: size[f"{s}_iters"] * size["global_batch"] * size["seq"] for s in ("base", "cont")}
    print(f"\nClaim 2 (BioMamba): continued pretraining, perplexity per token on held-out text "
          f"(x = ratio to the base model; band for 'kept': x{BAND:.2f})")
    print(f"base: {tokens['base']:,} tokens of C4 + WikiText-2; continued: {tokens['cont']:,} tokens each\n")
    print(table(["model", "PubMed", "C4", "WikiText-2"], rows))
    for family, v in verdict.items():
        print(f"\n{family}: " + "; ".join(f"{k}: {'yes' if ok else 'NO'}" for k, ok in v.items()))
    print(f"\nwall time {wall:.0f}s, seed {args.seed}")
    result = {
        "claim": "continued pretraining on the 80/10/10 blend keeps general ability (BioMamba)", "smoke": args.smoke,
        "sizes": size, "seed": args.seed, "tokens": tokens, "band": BAND,
        "blend": get_blend("biomamba").weights,
        "heldout_documents": {k: min(size["eval_docs"][k], len(corpora[k][1])) for k in corpora},
        "split": "sha256(key) < 0.10 (examples/reproduce/common.py)",
        "results": results, "shown": verdict, "wall_time_s": round(wall, 1), "tool_seconds": run.seconds,
        "machine": {**machine(), "load_average_at_start": load_start},
    }
    print(f"result: {write_result(CLAIM, result, args.smoke, args.results_dir and Path(args.results_dir))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
