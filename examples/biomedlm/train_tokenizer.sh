#!/usr/bin/env bash
# BioMedLM's tokenizer: a byte-level BPE of 28,896 tokens trained on PubMed abstracts, with the published id
# layout (<|endoftext|> the last id, 28,895) and trimmed offsets. The pretraining recipe (_pretrain.sh) reads the
# directory this writes (its TOKENIZER default is the same ${DATA_DIR}/tokenizer).
#
#   INPUT=/data/pubmed/abstracts bash examples/biomedlm/train_tokenizer.sh     # JSONL files, globs or directories
#   DRY_RUN=1 bash examples/biomedlm/train_tokenizer.sh                         # print the command only
#
# Arguments given to this script are appended last and win (e.g. --vocab-size 4096 for a small corpus).
set -euo pipefail

REPO_DIR="${REPO_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
PYTHON="${PYTHON:-python}"
DATA_DIR="${DATA_DIR:-/data/biomedlm}"
# PubMed abstracts as JSONL (tools/pubmed_to_jsonl.py output): BioMedLM paper (arXiv 2403.18421, p. 5) trains
# its tokenizer on PubMed abstracts. INPUT is word-split on purpose (several files or globs).
INPUT="${INPUT:-${DATA_DIR}/pubmed_abstracts_jsonl}"
JSON_KEYS="${JSON_KEYS:-text}"
OUTPUT_DIR="${OUTPUT_DIR:-${DATA_DIR}/tokenizer}"

RECIPE=(
  # BioMedLM paper Table 2 and stanford-crfm/BioMedLM tokenize/train_bpe.py @ 9e35fdd: vocab 28,896, min
  # frequency 2, the 256 byte symbols as initial alphabet, ByteLevel pre-tokenizer without a prefix space.
  --vocab-size 28896
  --min-frequency 2
  # The published tokenizer (config.json eos_token_id 28895): <|endoftext|> after every learned token.
  --special-tokens-position last
  # train_bpe.py: processors.ByteLevel(trim_offsets=True).
  --trim-offsets
)

CMD=("${PYTHON}" tools/train_tokenizer.py --input ${INPUT} --json-keys ${JSON_KEYS} --output-dir "${OUTPUT_DIR}"
     "${RECIPE[@]}" "$@")
cd "${REPO_DIR}"
if [[ "${DRY_RUN:-0}" == "1" ]]; then
  printf '%q ' "${CMD[@]}"
  echo
  exit 0
fi
exec "${CMD[@]}"
