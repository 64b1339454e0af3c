#!/usr/bin/env bash
# BioMedLM's MMLU protocol: one multiple-choice head fine-tuned on MedMCQA + MedQA together, then MMLU's medical
# subjects scored with it (no MMLU training data; the paper's MMLU numbers, arXiv 2403.18421 §4.5, as issue 18
# quotes it).
#
#   bash examples/biomedlm/finetune_mmlu_head.sh                       # train, then score the subjects
#   STAGE=evaluate MMLU_DIR=/data/mmlu/test bash examples/biomedlm/finetune_mmlu_head.sh
#   DRY_RUN=1 STAGE=train bash examples/biomedlm/finetune_mmlu_head.sh  # the training plan only
#
# Training is finetune_medmcqa.sh (its MedMCQA files, cop base, schedule and sources) with MedQA's training
# file added by --train-files medqa:PATH (task.train_files: each file read in its own format, all items
# shuffled together each epoch); TRAIN_ITEMS is the sum of both. Scoring is tools/evaluate.py --head mc on
# each subject's CSV (MMLU's {subject}_test.csv layout, read with --format mmlu), laid out in the head's own
# input format (biomedlm-mc); one JSON report per subject under runs/RUN_NAME/mmlu/.
set -euo pipefail

REPO_DIR="${REPO_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
PYTHON="${PYTHON:-python}"
STAGE="${STAGE:-all}"   # train, evaluate or all
RUN_NAME="${RUN_NAME:-biomedlm-2.7b-mmlu-head}"
MEDQA_TRAIN_FILE="${MEDQA_TRAIN_FILE:-/data/medqa/train.jsonl}"
MMLU_DIR="${MMLU_DIR:-/data/mmlu/test}"
# The six MMLU medical subjects (Med-PaLM's selection, Singhal et al. 2022: our reading of which the paper
# reports; MMLU Medical Genetics is the abstract's 69.0).
SUBJECTS="${SUBJECTS:-anatomy clinical_knowledge college_biology college_medicine medical_genetics professional_medicine}"

case "${STAGE}" in train|evaluate|all) ;; *) echo "STAGE=${STAGE}: expected train, evaluate or all" >&2; exit 2 ;; esac
if [[ "${STAGE}" != evaluate ]]; then
  # MedMCQA train 182,822 + MedQA US 4-option train 10,178 questions.
  RUN_NAME="${RUN_NAME}" TRAIN_ITEMS="${TRAIN_ITEMS:-193000}" \
    bash "${REPO_DIR}/examples/biomedlm/finetune_medmcqa.sh" --train-files "medqa:${MEDQA_TRAIN_FILE}" "$@"
fi
if [[ "${STAGE}" != train ]]; then
  CHECKPOINT_DIR="${CHECKPOINT_DIR:-${REPO_DIR}/runs/${RUN_NAME}/checkpoints}"
  cd "${REPO_DIR}"
  for subject in ${SUBJECTS}; do
    "${PYTHON}" tools/evaluate.py --load "${CHECKPOINT_DIR}" --head mc --format mmlu \
      --test-file "${MMLU_DIR}/${subject}_test.csv" --output "${REPO_DIR}/runs/${RUN_NAME}/mmlu/${subject}.json"
  done
fi
