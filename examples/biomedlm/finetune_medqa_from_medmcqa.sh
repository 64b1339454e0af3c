#!/usr/bin/env bash
# BioMedLM's MedQA protocol: the multiple-choice head is first fine-tuned on MedMCQA, then that fine-tune (body
# and head) is fine-tuned on MedQA (the paper's MedQA 54.7, arXiv 2403.18421 §4.5, as issue 18 quotes it).
#
#   bash examples/biomedlm/finetune_medqa_from_medmcqa.sh              # both stages
#   STAGE=medqa bash examples/biomedlm/finetune_medqa_from_medmcqa.sh  # only the second (the first is done)
#   DRY_RUN=1 STAGE=medqa bash examples/biomedlm/finetune_medqa_from_medmcqa.sh   # its plan only
#
# Stage 1 is finetune_medmcqa.sh as it stands (its data, schedule and sources); stage 2 is finetune_medqa.sh
# started with --init-from the stage-1 checkpoint and --init-with-head (checkpoint.init_with_head: the trained
# head is loaded, not a fresh one; its shape, one score per option, is the same). Both read BioMedLM's
# multiple-choice format (biomedlm-mc). Arguments given to this script go to both stages, last, and win.
set -euo pipefail

REPO_DIR="${REPO_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
STAGE="${STAGE:-all}"   # medmcqa, medqa or all
MEDMCQA_RUN="${MEDMCQA_RUN:-biomedlm-2.7b-medmcqa}"
MEDQA_RUN="${MEDQA_RUN:-biomedlm-2.7b-medqa-from-medmcqa}"

case "${STAGE}" in medmcqa|medqa|all) ;; *) echo "STAGE=${STAGE}: expected medmcqa, medqa or all" >&2; exit 2 ;; esac
if [[ "${STAGE}" != medqa ]]; then
  RUN_NAME="${MEDMCQA_RUN}" bash "${REPO_DIR}/examples/biomedlm/finetune_medmcqa.sh" "$@"
fi
if [[ "${STAGE}" != medmcqa ]]; then
  INIT_FROM="${REPO_DIR}/runs/${MEDMCQA_RUN}/checkpoints" RUN_NAME="${MEDQA_RUN}" \
    bash "${REPO_DIR}/examples/biomedlm/finetune_medqa.sh" --init-with-head "$@"
fi
