#!/usr/bin/env bash
# The BioMedLM fine-tuning checkpoints with the added tokens of their input formats (finetune/formats.py), made
# once before examples/biomedlm/finetune_*.sh, through the project's vocabulary-extension path:
#
#   tools/extend_vocab.py --input-format F   the tokenizer with F's added tokens (new ids after the last one)
#                                            and new_token_pieces.json (each new row = the mean of its pieces)
#   tools/convert_hf.py import --extend-vocab  the checkpoint with its embedding grown to match, the extended
#                                            tokenizer saved beside it (so an HF export carries the same ids)
#
#   HF_DIR=/models/BioMedLM bash examples/biomedlm/prepare_finetune_vocab.sh     # the released model
#   bash examples/biomedlm/prepare_finetune_vocab.sh                            # our pretrained checkpoint
#
# Two checkpoints, as BioMedLM's two scripts resize the embeddings differently (stanford-crfm/BioMedLM
# finetune/mc/run_multiple_choice.py adds [PAD] [CLS] [SEP]; finetune/seqcls/run_seqcls_gpt.py adds [PAD]
# <|CONTEXT|> <|QUESTION1|> <|QUESTION2|> <|ANSWER|>, @ 9e35fddada3e7e5638f5dc55b9e5c74502de6c86):
#   runs/biomedlm-2.7b-vocab-mc/checkpoints      for finetune_medqa.sh, finetune_medmcqa.sh (biomedlm-mc)
#   runs/biomedlm-2.7b-vocab-seqcls/checkpoints  for finetune_pubmedqa.sh, finetune_bioasq.sh (biomedlm-tokens,
#                                                biomedlm-pair)
# New rows: the mean of the rows of the pieces the base tokenizer splits the token's text into (the extension
# path's rule, our choice); the authors' transformers 4.24 resize_token_embeddings drew them from
# N(0, initializer_range) instead.
set -euo pipefail

REPO_DIR="${REPO_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
PYTHON="${PYTHON:-python}"
# The pretrained model: a Hugging Face directory, or our checkpoint (exported to one first).
CHECKPOINT="${CHECKPOINT:-${REPO_DIR}/runs/biomedlm-2.7b/checkpoints}"
HF_DIR="${HF_DIR:-}"
OUT_ROOT="${OUT_ROOT:-${REPO_DIR}/runs}"
TP="${TP:-1}"  # the TP the fine-tunes load at (the embedding's padding)

cd "${REPO_DIR}"
if [[ -z "${HF_DIR}" ]]; then
  HF_DIR="${OUT_ROOT}/biomedlm-2.7b-hf"
  "${PYTHON}" tools/convert_hf.py export --load "${CHECKPOINT}" --out "${HF_DIR}"
fi
for pair in mc:biomedlm-mc seqcls:biomedlm-tokens; do
  kind="${pair%%:*}"
  format="${pair#*:}"
  out="${OUT_ROOT}/biomedlm-2.7b-vocab-${kind}"
  "${PYTHON}" tools/extend_vocab.py --base-tokenizer "${HF_DIR}" --input-format "${format}" \
    --output-dir "${out}/tokenizer-extended"
  "${PYTHON}" tools/convert_hf.py import --hf-dir "${HF_DIR}" --save "${out}/checkpoints" --preset biomedlm-2.7b \
    --tensor-model-parallel-size "${TP}" --extend-vocab "${out}/tokenizer-extended"
done
